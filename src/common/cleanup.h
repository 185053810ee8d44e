/* Scope-bound cleanup, as crun and systemd do it.
 *
 *   _cleanup_free_ char *p = malloc(n);      freed when p leaves scope
 *   _cleanup_close_ int fd = open(...);      closed when fd leaves scope (if >= 0)
 *   return steal_pointer(&p);               hands ownership on; p becomes NULL
 *   return steal_fd(&fd);                    likewise for descriptors; fd becomes -1
 */
#ifndef MSB_COMMON_CLEANUP_H
#define MSB_COMMON_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void msb_freep(void *p)
{
	free(*(void **)p);
}

static inline void msb_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void msb_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_(fn)	 __attribute__((cleanup(fn)))
#define _cleanup_free_	 _cleanup_(msb_freep)
#define _cleanup_close_	 _cleanup_(msb_closep)
#define _cleanup_fclose_ _cleanup_(msb_fclosep)

static inline void *msb_steal_ptr(void *pp)
{
	void **p = (void **)pp;
	void *v = *p;
	*p = NULL;
	return v;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))msb_steal_ptr(pp))

static inline int steal_fd(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}

#define MSB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
