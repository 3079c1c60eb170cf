/* Workload for tests/probe_ebpf.rs and host/benches/probe.rs, built with
 * `gcc -static` at test time and packaged FROM scratch (no registry here).
 *
 *   load burn SECS        burn one core for SECS, then idle
 *   load mem MIB SECS     touch MIB of memory, hold SECS, free it, then idle
 *   load conns N SECS     open N loopback TCP connections to itself (server
 *                         and clients in this process), hold SECS, close
 *                         them, then idle
 *   load switch SECS      two threads ping-pong through a pipe for SECS:
 *                         a context-switch-heavy load
 *   load idle             idle
 * Every mode but idle waits for SIGUSR1 before it starts, so that the test
 * can start tracking the container first. SIGTERM ends it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	while (!go)
		pause();
	if (!strcmp(argv[1], "burn") && argc > 2) {
		double end = now() + atof(argv[2]);
		volatile unsigned long x = 0;
		while (now() < end)
			for (int i = 0; i < 100000; i++)
				x += i;
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
		fprintf(stderr, "usage: load burn SECS | mem MIB SECS | conns N SECS | switch SECS | idle\n");
		return 2;
	}
	idle();
}
