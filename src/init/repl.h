/* The driver programs of the persistent REPLs (repl_drivers.c); the engine
 * itself is in repl.c and reached through server_int.h. */
#ifndef MSB_INIT_REPL_H
#define MSB_INIT_REPL_H

extern const char repl_driver_python[];
extern const char repl_driver_node[];

#endif
