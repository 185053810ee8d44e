/* virtio-fs: a FUSE server over the device's request queues, one host
 * directory per device (a volume).  The server is a pure function of the
 * request bytes, the guest memory they name and its own tables; it is kept
 * apart from the device (fs.c) so that it can be tested and fuzzed without a
 * VM.
 *
 * Confinement: each inode the guest knows is an O_PATH file descriptor reached
 * from the volume's root one name at a time with openat(O_NOFOLLOW); a name is
 * refused when it is empty, ".", "..", longer than 255 bytes or contains '/'.
 * Symlinks are never followed (reading one returns its text), files are opened
 * only when they are regular files or directories, so a guest-made link or a
 * rename cannot make the server touch a host file outside the volume.  A
 * read-only volume answers EROFS to everything that would change it.
 *
 * Owners: the guest's root stands for the host user who runs the server (its
 * owner, fs_server_set_owner()).  When that user is not root, the guest sees
 * the owner's files as owned by 0 (uid and gid apart), host root's as
 * FS_OVERFLOW_ID (so that no host root file passes for the guest's), any other
 * id as it is; a chown to 0 is a chown to the owner, any other id is passed
 * to the host as it is (which refuses what the owner may not do).
 */
#ifndef MSB_VIRTIO_FS_H
#define MSB_VIRTIO_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtqueue.h"

#define FS_TAG_MAX    36	    /* bytes of the tag in the configuration space */
#define FS_MAX_WRITE  (128u * 1024) /* max_write and the largest READ answered */
#define FS_REQ_MAX    (FS_MAX_WRITE + 4096u)
#define FS_MAX_INODES 16384u
#define FS_MAX_FILES  4096u
#define FS_OVERFLOW_ID \
	65534u /* the guest's `nobody`: host root's files when the owner is not root */

struct fs_server;

/* A server for the directory open as `root_fd` (taken over; -1: an empty slot
 * that answers INIT with EIO).  NULL when memory runs out. */
struct fs_server *fs_server_new(int root_fd, bool readonly);
void fs_server_free(struct fs_server *s);

/* The host user (uid, gid) the guest's root stands for; fs_server_new() takes
 * the process's effective ids. */
void fs_server_set_owner(struct fs_server *s, uint32_t uid, uint32_t gid);

/* Forget the FUSE session: every inode but the root and every open file
 * (device reset, FUSE_DESTROY). */
void fs_server_reset(struct fs_server *s);

/* Whether a FUSE_INIT was answered since the last reset. */
bool fs_server_mounted(const struct fs_server *s);

/* Answer one request: `in` holds the readable part of a chain (`in_len`
 * bytes: fuse_in_header, arguments, data); the answer goes to `out` (at most
 * `out_cap` bytes).  Returns the answer's length; 0 when the request takes no
 * answer (FORGET, BATCH_FORGET) or is too short to name one. */
size_t fs_server_dispatch(struct fs_server *s, const uint8_t *in, size_t in_len, uint8_t *out,
			  size_t out_cap);

/* One chain: copy its readable part once, dispatch, write the answer to its
 * writable part.  Returns the used length. */
uint32_t fs_server_chain(struct fs_server *s, const struct guest_mem *m,
			 const struct virtq_chain *c);

#endif
