/* Diagnostic logging to stderr.  Level comes from MSB_LOG
 * (error|warn|info|debug|trace; default warn) or msb_log_set_level(). */
#ifndef MSB_COMMON_LOG_H
#define MSB_COMMON_LOG_H

enum msb_log_level { MSB_LOG_ERROR, MSB_LOG_WARN, MSB_LOG_INFO, MSB_LOG_DEBUG, MSB_LOG_TRACE };

void msb_log_init(const char *progname);
void msb_log_set_level(enum msb_log_level level);
int msb_log_enabled(enum msb_log_level level);
__attribute__((format(printf, 2, 3))) void msb_log(enum msb_log_level level, const char *fmt, ...);

#define msb_error(...) msb_log(MSB_LOG_ERROR, __VA_ARGS__)
#define msb_warn(...)  msb_log(MSB_LOG_WARN, __VA_ARGS__)
#define msb_info(...)  msb_log(MSB_LOG_INFO, __VA_ARGS__)
#define msb_debug(...) msb_log(MSB_LOG_DEBUG, __VA_ARGS__)
#define msb_trace(...) msb_log(MSB_LOG_TRACE, __VA_ARGS__)

#endif
