/* eth0 for the guest: address, default route, resolv.conf (net.h). */
#include "init/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

#define IFACE "eth0"

static void set_sin(struct sockaddr *sa, uint32_t addr)
{
	struct sockaddr_in *s = (struct sockaddr_in *)sa;
	memset(s, 0, sizeof(*s));
	s->sin_family = AF_INET;
	s->sin_addr.s_addr = addr;
}

static int set_addr(int fd, unsigned long req, uint32_t addr, const char *what, struct msb_err *err)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), IFACE);
	set_sin(&ifr.ifr_addr, addr);
	if (ioctl(fd, req, &ifr) < 0)
		return msb_err_sys(err, "setting the %s of " IFACE, what);
	return 0;
}

static int write_resolv_conf(uint32_t dns, struct msb_err *err)
{
	char ip[INET_ADDRSTRLEN], text[64];
	struct in_addr a = {.s_addr = dns};
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	int n = snprintf(text, sizeof(text), "nameserver %s\n", ip);
	if (mkdir("/etc", 0755) < 0 && errno != EEXIST)
		return msb_err_sys(err, "creating /etc for resolv.conf");
	/* Images often link it to a resolver daemon's file that is not there:
	 * the sandbox's own file replaces the link (the root's writable layer). */
	struct stat st;
	if (lstat("/etc/resolv.conf", &st) == 0 && S_ISLNK(st.st_mode) &&
	    unlink("/etc/resolv.conf") < 0)
		return msb_err_sys(err, "replacing the link /etc/resolv.conf");
	_cleanup_close_ int fd = open("/etc/resolv.conf",
				      O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return msb_err_sys(err, "writing /etc/resolv.conf");
	if (write(fd, text, (size_t)n) != n)
		return msb_err_sys(err, "writing /etc/resolv.conf");
	return 0;
}

int init_net_setup(const struct agent_net *n, bool root, struct msb_err *err)
{
	_cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return msb_err_sys(err, "socket for configuring " IFACE);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), IFACE);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		return msb_err_sys(err, IFACE " is missing (the VM has no network device?)");
	uint32_t mask = htonl(~0u << (32 - n->prefix));
	if (set_addr(fd, SIOCSIFADDR, n->addr, "address", err) < 0 ||
	    set_addr(fd, SIOCSIFNETMASK, mask, "netmask", err) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		return msb_err_sys(err, "bringing " IFACE " up");
	struct rtentry rt;
	memset(&rt, 0, sizeof(rt));
	set_sin(&rt.rt_dst, 0);
	set_sin(&rt.rt_genmask, 0);
	set_sin(&rt.rt_gateway, n->gateway);
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	rt.rt_dev = (char *)IFACE;
	ioctl(fd, SIOCDELRT, &rt); /* a default route from an earlier setup */
	if (ioctl(fd, SIOCADDRT, &rt) < 0)
		return msb_err_sys(err, "adding the default route through " IFACE);
	if (root && write_resolv_conf(n->dns, err) < 0)
		return -1;
	return 0;
}
