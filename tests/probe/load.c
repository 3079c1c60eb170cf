/* Workload for tests/probe_ebpf.rs and host/benches/probe.rs, built with
 * `gcc -static` at test time and packaged FROM scratch (no registry here).
 *
 *   load burn SECS        burn one core for SECS, then idle
 *   load spin THREADS SECS
 *                         THREADS threads spin for SECS, then idle: a load
 *                         that saturates a CPU limit below THREADS cores
 *   load pulse N ON_MS OFF_MS THREADS
 *                         N times: THREADS threads spin for ON_MS, then all
 *                         sleep OFF_MS plus a random 0-100 ms (so that pulses
 *                         fall at random phases of the probe's window); each
 *                         pulse prints "pulse <CLOCK_MONOTONIC ns>" as it starts
 *   load churn SECS       open and close loopback TCP connections to itself
 *                         back to back for SECS: one accept per connection
 *   load hover N SECS     hold N-1 loopback connections and for SECS open
 *                         and close an Nth one every millisecond: an open
 *                         count hovering at N, then close them all
 *   load mem MIB SECS     touch MIB of memory, hold SECS, free it, then idle
 *   load conns N SECS     open N loopback TCP connections to itself (server
 *                         and clients in this process), hold SECS, close
 *                         them, then idle
 *   load switch SECS      two threads ping-pong through a pipe for SECS:
 *                         a context-switch-heavy load
 *   load idle             idle
 *   load tick MS          wake every MS milliseconds, forever
 *   load serve PORT       listen on 127.0.0.1:PORT (run it with --network
 *                         host) and answer every connection with "ok\n",
 *                         one at a time: a server the test can freeze
 *   load http PORT WORK_US
 *                         an HTTP/1.1 server on 127.0.0.1:PORT (run it with
 *                         --network host), one thread, epoll: it accepts one
 *                         connection per turn of its loop (the others wait
 *                         in the accept queue), answers one request per
 *                         ready connection per turn after WORK_US of CPU
 *                         time, and keeps the connection unless the request
 *                         says "Connection: close". Its capacity is about
 *                         1e6 / WORK_US requests per second of free CPU.
 * Every mode but idle, tick, serve and http waits for SIGUSR1 before it starts, so that
 * the test can start tracking the container first. SIGTERM ends it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_usr1(int sig) { (void)sig; go = 1; }
static void on_term(int sig) { (void)sig; _exit(0); }

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void idle(void)
{
	for (;;)
		pause();
}

static __uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Spinning threads: spin while `spin_until` (CLOCK_MONOTONIC ns) is ahead. */
static volatile __uint64_t spin_until;
static void *spinner(void *arg)
{
	(void)arg;
	volatile unsigned long x = 0;
	for (;;) {
		while (now_ns() < spin_until)
			for (int i = 0; i < 10000; i++)
				x += i;
		usleep(1000);
	}
	return 0;
}

static void start_spinners(int threads)
{
	for (int i = 1; i < threads; i++) {
		pthread_t t;
		pthread_create(&t, 0, spinner, 0);
	}
}

/* Spin on this thread too until `spin_until`. */
static void spin_here(void)
{
	volatile unsigned long x = 0;
	while (now_ns() < spin_until)
		for (int i = 0; i < 10000; i++)
			x += i;
}

static int loopback_listener(struct sockaddr_in *a)
{
	socklen_t al = sizeof(*a);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	a->sin_family = AF_INET;
	a->sin_port = 0;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || bind(ls, (struct sockaddr *)a, sizeof(*a)) || listen(ls, 1024) ||
	    getsockname(ls, (struct sockaddr *)a, &al)) {
		perror("listen");
		exit(1);
	}
	return ls;
}

/* Spin for `us` microseconds of this thread's CPU time. */
static void work(long us)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	__uint64_t end = (__uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec + (__uint64_t)us * 1000ull;
	volatile unsigned long x = 0;
	for (;;) {
		for (int i = 0; i < 1000; i++)
			x += i;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
		if ((__uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec >= end)
			break;
	}
}

static int http(int port, long work_us)
{
	int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 65535)) {
		perror("listen");
		return 1;
	}
	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls }, evs[256];
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	static char buf[65536];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == ls) {
				int c = accept4(ls, 0, 0, SOCK_NONBLOCK);
				if (c >= 0) {
					struct epoll_event ce = { .events = EPOLLIN, .data.fd = c };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
				}
				continue;
			}
			ssize_t r = read(fd, buf, sizeof(buf) - 1);
			if (r <= 0) {
				close(fd);
				continue;
			}
			buf[r] = 0;
			int keep = !strstr(buf, "Connection: close") && !strstr(buf, "connection: close");
			work(work_us);
			static const char ka[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
			static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
			const char *resp = keep ? ka : cl;
			size_t len = keep ? sizeof(ka) - 1 : sizeof(cl) - 1;
			if (write(fd, resp, len) != (ssize_t)len || !keep)
				close(fd);
		}
	}
}

static int pipes[2][2];
static volatile int stop_switch;
static void *pong(void *arg)
{
	(void)arg;
	char c;
	while (!stop_switch && read(pipes[0][0], &c, 1) == 1)
		if (write(pipes[1][1], &c, 1) != 1)
			break;
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGUSR1, on_usr1);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	if (argc < 2 || !strcmp(argv[1], "idle"))
		idle();
	if (!strcmp(argv[1], "serve") && argc > 2) {
		int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_port = htons(atoi(argv[2])),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		    bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1024)) {
			perror("listen");
			return 1;
		}
		for (;;) {
			int s = accept(ls, 0, 0);
			if (s < 0)
				continue;
			if (write(s, "ok\n", 3) != 3)
				perror("write");
			close(s);
		}
	}
	if (!strcmp(argv[1], "http") && argc > 3)
		return http(atoi(argv[2]), atol(argv[3]));
	if (!strcmp(argv[1], "tick") && argc > 2) {
		/* Wake every MS milliseconds (below 1000) from the start: idle but
		 * not silent, like a service's timers and health checks. */
		struct timespec ts = { .tv_sec = 0, .tv_nsec = atol(argv[2]) % 1000 * 1000000L };
		for (;;)
			nanosleep(&ts, 0);
	}
	while (!go)
		pause();
	if (!strcmp(argv[1], "burn") && argc > 2) {
		double end = now() + atof(argv[2]);
		volatile unsigned long x = 0;
		while (now() < end)
			for (int i = 0; i < 100000; i++)
				x += i;
	} else if (!strcmp(argv[1], "spin") && argc > 3) {
		spin_until = now_ns() + (__uint64_t)(atof(argv[3]) * 1e9);
		start_spinners(atoi(argv[2]));
		spin_here();
	} else if (!strcmp(argv[1], "pulse") && argc > 5) {
		int n = atoi(argv[2]), threads = atoi(argv[5]);
		__uint64_t on = (__uint64_t)atol(argv[3]) * 1000000ull, off = (__uint64_t)atol(argv[4]) * 1000ull;
		srand((unsigned)now_ns());
		start_spinners(threads);
		for (int i = 0; i < n; i++) {
			__uint64_t start = now_ns();
			spin_until = start + on;
			printf("pulse %llu\n", (unsigned long long)start);
			fflush(stdout);
			spin_here();
			usleep(off + (rand() % 100000));
		}
	} else if (!strcmp(argv[1], "churn") && argc > 2) {
		struct sockaddr_in a;
		int ls = loopback_listener(&a);
		double end = now() + atof(argv[2]);
		while (now() < end) {
			int c = socket(AF_INET, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a))) {
				perror("connect");
				return 1;
			}
			int s = accept(ls, 0, 0);
			close(c);
			close(s);
		}
		close(ls);
	} else if (!strcmp(argv[1], "hover") && argc > 3) {
		struct sockaddr_in a;
		int ls = loopback_listener(&a), n = atoi(argv[2]);
		int *fds = calloc(2 * n, sizeof(int));
		for (int i = 0; i < n - 1; i++) {
			fds[2 * i] = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(fds[2 * i], (struct sockaddr *)&a, sizeof(a))) {
				perror("connect");
				return 1;
			}
			fds[2 * i + 1] = accept(ls, 0, 0);
		}
		double end = now() + atof(argv[3]);
		while (now() < end) {
			int c = socket(AF_INET, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a))) {
				perror("connect");
				return 1;
			}
			int s = accept(ls, 0, 0);
			usleep(500);
			close(c);
			close(s);
			usleep(500);
		}
		for (int i = 0; i < 2 * (n - 1); i++)
			close(fds[i]);
		close(ls);
	} else if (!strcmp(argv[1], "mem") && argc > 3) {
		size_t len = (size_t)atol(argv[2]) << 20;
		char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		for (size_t i = 0; i < len; i += 4096)
			p[i] = 1;
		sleep(atoi(argv[3]));
		munmap(p, len);
	} else if (!strcmp(argv[1], "conns") && argc > 3) {
		int n = atoi(argv[2]);
		int ls = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t al = sizeof(a);
		if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1024) ||
		    getsockname(ls, (struct sockaddr *)&a, &al)) {
			perror("listen");
			return 1;
		}
		int *fds = calloc(2 * n, sizeof(int));
		for (int i = 0; i < n; i++) {
			fds[2 * i] = socket(AF_INET, SOCK_STREAM, 0);
			if (connect(fds[2 * i], (struct sockaddr *)&a, sizeof(a))) {
				perror("connect");
				return 1;
			}
			fds[2 * i + 1] = accept(ls, 0, 0);
		}
		sleep(atoi(argv[3]));
		for (int i = 0; i < 2 * n; i++)
			close(fds[i]);
		close(ls);
	} else if (!strcmp(argv[1], "switch") && argc > 2) {
		if (pipe(pipes[0]) || pipe(pipes[1]))
			return 1;
		pthread_t t;
		pthread_create(&t, 0, pong, 0);
		double end = now() + atof(argv[2]);
		char c = 'x';
		while (now() < end)
			for (int i = 0; i < 1000; i++)
				if (write(pipes[0][1], &c, 1) != 1 || read(pipes[1][0], &c, 1) != 1)
					return 1;
		stop_switch = 1;
	} else {
		fprintf(stderr, "usage: load tick MS | burn SECS | spin THREADS SECS | pulse N ON_MS OFF_MS THREADS | mem MIB SECS | conns N SECS | churn SECS | "
				"hover N SECS | "
				"switch SECS | serve PORT | http PORT WORK_US | idle\n");
		return 2;
	}
	idle();
}
