// cfloor: the least possible UDP fan-out forwarder in C, the kernel's own
// cost against which the benchmarks state the router's ratios (bench/README.md).
//
// It is the C twin of the Go floor (fwd_floor_linux_test.go): one blocking
// UDP socket on 127.0.0.1:0 read by one thread with recvmmsg(2) in batches of
// 64 (MSG_WAITFORONE) into preallocated buffers; for every received packet one
// mmsghdr per subscriber pointing at the same buffer (no copy), sent with
// sendmmsg(2) in chunks of up to 1024 (UIO_MAXIOV), resuming partial sends and
// skipping a message the kernel refuses. No parsing, lookup or counting.
//
// The bench package compiles it with the system C compiler (cc -O2) and runs
// it as a forwarder child speaking the parent's line protocol on stdin/stdout
// (child_test.go), with a simpler start line:
//
//	parent: start <n> <ipv4:port> ... (n subscribers)   child: ok 127.0.0.1:<port> | err <message>
//	parent: usage                                       child: usage <cpu ns> 0 0
//	parent: quit                                        child: bye
//
// CPU time is clock_gettime(CLOCK_PROCESS_CPUTIME_ID): every thread of the
// process, user and system. End of stdin stops the forwarder like quit.
//
// With the argument "gso" (impl cfloor-gso) it is the floor of UDP GSO
// (UDP_SEGMENT, Linux 4.18+): consecutive packets of a read batch of one
// size but for a shorter last one (a video frame), at most MAXSEG of them
// and MAXRUN bytes, go to each subscriber as one super-packet: the run is
// copied once into a staging buffer (one iovec per message, the way the
// router does it: a little cheaper than one iovec per packet), and the
// control message is the segment size; a packet alone is sent as plain. It keeps no state
// per flow: every packet goes to every subscriber, so all it needs is
// equal sizes.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
	BATCH = 64,            // datagrams per recvmmsg, the router's DefaultBatch
	MAXOUT = 1024,         // messages per sendmmsg: UIO_MAXIOV
	BUFSIZE = 2048,        // receive buffer per datagram (fwdBufSize)
	SOCKBUF = 4 << 20,     // SO_RCVBUF/SO_SNDBUF (fwdSocketBuffer)
	MAXSUBS = 4096,        // subscribers accepted in a start line
	MAXLINE = 1 << 20,     // longest control line (maxControlLine)
	MAXSEG = 64,           // datagrams per super-packet (egress.MaxSegments)
	MAXRUN = 65535 - 28,   // payload bytes per super-packet (egress.MaxRunBytes)
};

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 // linux/udp.h, for C libraries older than Linux 4.18
#endif

static int gso; // "gso" argument: super-packets for runs of equal size

static int fd = -1;
static struct sockaddr_in *subs;
static int nsubs;
static atomic_int closing;

static void send_all(struct mmsghdr *msgs, int n) {
	while (n > 0) {
		int r = sendmmsg(fd, msgs, (unsigned)n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) { // refused: skip it (a loss the parent counts)
			msgs++, n--;
			continue;
		}
		msgs += r, n -= r;
	}
}

static void *loop(void *arg) {
	(void)arg;
	static char bufs[BATCH][BUFSIZE];
	static struct mmsghdr in[BATCH];
	static struct iovec iniov[BATCH], outiov[BATCH];
	static struct mmsghdr out[MAXOUT];
	static union { // a run's UDP_SEGMENT control message, by its first packet
		char buf[CMSG_SPACE(sizeof(uint16_t))];
		struct cmsghdr align;
	} ctls[BATCH];
	static struct iovec runiov[BATCH]; // a staged run, by its first packet
	static char stage[BATCH * BUFSIZE];
	for (int i = 0; i < BATCH; i++) {
		iniov[i].iov_base = bufs[i];
		iniov[i].iov_len = BUFSIZE;
		in[i].msg_hdr.msg_iov = &iniov[i];
		in[i].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		int r = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
		if (atomic_load(&closing))
			return NULL;
		if (r < 0)
			continue; // EINTR; nothing else happens to a bound UDP socket
		int k = 0;
		size_t staged = 0; // bytes of stage in use: the batch's runs
		for (int i = 0; i < r;) {
			// The run starting at packet i: the packets after it of the
			// same size, and one shorter packet to end it (GSO only).
			size_t seg = in[i].msg_len, bytes = seg;
			int n = 1;
			outiov[i].iov_base = iniov[i].iov_base;
			outiov[i].iov_len = seg;
			while (gso && i + n < r && n < MAXSEG && in[i + n - 1].msg_len == seg &&
			       in[i + n].msg_len <= seg && bytes + in[i + n].msg_len <= MAXRUN) {
				outiov[i + n].iov_base = iniov[i + n].iov_base;
				outiov[i + n].iov_len = in[i + n].msg_len;
				bytes += in[i + n].msg_len;
				n++;
			}
			void *ctl = NULL;
			size_t ctllen = 0;
			struct iovec *iov = &outiov[i];
			size_t iovlen = (size_t)n;
			if (n > 1) {
				char *p = stage + staged;
				for (int s = 0; s < n; s++) {
					memcpy(stage + staged, outiov[i + s].iov_base, outiov[i + s].iov_len);
					staged += outiov[i + s].iov_len;
				}
				runiov[i].iov_base = p;
				runiov[i].iov_len = bytes;
				iov = &runiov[i];
				iovlen = 1;
				struct cmsghdr *c = &ctls[i].align;
				c->cmsg_level = SOL_UDP;
				c->cmsg_type = UDP_SEGMENT;
				c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
				*(uint16_t *)CMSG_DATA(c) = (uint16_t)seg;
				ctl = ctls[i].buf;
				ctllen = CMSG_SPACE(sizeof(uint16_t));
			}
			for (int j = 0; j < nsubs; j++) {
				struct msghdr *m = &out[k].msg_hdr;
				m->msg_name = &subs[j];
				m->msg_namelen = sizeof subs[j];
				m->msg_iov = iov;
				m->msg_iovlen = iovlen;
				m->msg_control = ctl;
				m->msg_controllen = ctllen;
				m->msg_flags = 0;
				if (++k == MAXOUT) {
					send_all(out, k);
					k = 0;
				}
			}
			i += n;
		}
		if (k > 0)
			send_all(out, k);
	}
}

static int parse_addr(const char *s, struct sockaddr_in *a) {
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65535)
		return -1;
	memset(a, 0, sizeof *a);
	a->sin_family = AF_INET;
	a->sin_port = htons((unsigned short)port);
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

// start parses "<n> <addr>..." and starts the forwarding thread.
static const char *start(char *args, pthread_t *th, int *started) {
	static char reply[128];
	if (*started)
		return "err already started";
	char *save, *tok = strtok_r(args, " ", &save);
	long n = tok ? strtol(tok, NULL, 10) : 0;
	if (n < 1 || n > MAXSUBS)
		return "err want 1 to 4096 subscribers";
	subs = calloc((size_t)n, sizeof *subs);
	for (long i = 0; i < n; i++) {
		tok = strtok_r(NULL, " ", &save);
		if (!tok || parse_addr(tok, &subs[i]) != 0)
			return "err bad subscriber address";
	}
	nsubs = (int)n;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return "err socket";
	int sz = SOCKBUF;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz) || setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz))
		return "err socket buffer";
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &alen))
		return "err bind";
	if (pthread_create(th, NULL, loop, NULL))
		return "err thread";
	*started = 1;
	snprintf(reply, sizeof reply, "ok 127.0.0.1:%u", ntohs(a.sin_port));
	return reply;
}

static void stop(pthread_t th, int *started) {
	if (!*started)
		return;
	atomic_store(&closing, 1);
	shutdown(fd, SHUT_RDWR); // wakes the blocked recvmmsg (returns ENOTCONN on UDP)
	pthread_join(th, NULL);
	close(fd);
	*started = 0;
}

int main(int argc, char **argv) {
	gso = argc > 1 && strcmp(argv[1], "gso") == 0;
	static char line[MAXLINE];
	pthread_t th;
	int started = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, "start ", 6) == 0) {
			puts(start(line + 6, &th, &started));
		} else if (strcmp(line, "usage") == 0) {
			struct timespec ts;
			clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
			printf("usage %llu 0 0\n", (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
		} else if (strcmp(line, "quit") == 0) {
			stop(th, &started);
			puts("bye");
			return 0;
		} else {
			printf("err unknown command\n");
		}
	}
	stop(th, &started);
	return 0;
}
