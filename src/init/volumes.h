#ifndef MSB_INIT_VOLUMES_H
#define MSB_INIT_VOLUMES_H

#include "agent/proto.h"
#include "common/error.h"

/* Mount each virtio-fs tag at its path (created when missing), nosuid and
 * nodev, read-only when asked.  The first failure ends it (kind not_found
 * when the tag or virtiofs is unknown); the ones before stay mounted. */
int init_mount_volumes(const struct agent_mount *m, unsigned n, struct msb_err *err);

#endif
