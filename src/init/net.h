/* The guest's network (docs/agent-protocol.md, SETUP's NET): eth0 gets the
 * address, the default route and a name server that msb chose for passt's
 * side (docs/sandbox.md), with ioctls, so no tool of the image is needed. */
#ifndef MSB_INIT_NET_H
#define MSB_INIT_NET_H

#include <stdbool.h>

#include "agent/proto.h"
#include "common/error.h"

/* Bring eth0 up with n's address and prefix, route everything through the
 * gateway, and, when `root` (the image's root is mounted), write
 * /etc/resolv.conf naming n's name server.  Again on a configured eth0: the
 * address and route are replaced. */
int init_net_setup(const struct agent_net *n, bool root, struct msb_err *err);

#endif
