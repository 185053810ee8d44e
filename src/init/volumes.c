/* Volumes in the guest: each SETUP MOUNT names a virtio-fs tag (a host
 * directory msb-vmm serves, docs/sandbox.md "Volumes") and where it goes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "common/paths.h"
#include "init/volumes.h"

int init_mount_volumes(const struct agent_mount *m, unsigned n, struct msb_err *err)
{
	for (unsigned i = 0; i < n; i++) {
		if (msb_mkdir_p(m[i].path, 0755, err) < 0)
			return msb_err_wrap(err, "mounting volume %s", m[i].tag);
		unsigned long flags = MS_NOSUID | MS_NODEV | (m[i].readonly ? MS_RDONLY : 0);
		if (mount(m[i].tag, m[i].path, "virtiofs", flags, NULL) < 0) {
			int e = errno;
			msb_err_sys(err, "mounting volume %s at %s", m[i].tag, m[i].path);
			if (e == ENOENT || e == ENODEV)
				err->kind = MSB_EK_NOT_FOUND;
			return -1;
		}
	}
	return 0;
}
