/*
 * Workloads for `cargo xtask bench`, compiled with gcc at bench time into target/bench/.
 *
 *   workloads mmap    MS        anon mmap(64 KiB) + write its first page + munmap
 *   workloads brk     MS        sbrk(+64 KiB) + write its first page + sbrk(-64 KiB)
 *   workloads malloc  MS        malloc/free churn over 4096 live blocks of 16 B..1 MiB
 *   workloads getppid MS        getppid() (an untraced syscall, for the bystander test)
 *   workloads ioctl   MS        ioctl(FIONREAD) on a pipe (an ioctl pmap-trace filters out)
 *   workloads rate    CALLS MS  paced mmap(4 KiB) + munmap pairs at CALLS calls/s (0: flat out)
 *   workloads maps    N         make N mappings, say READY on stderr, then wait for a signal
 *   workloads stacks  N         map a page from each of N distinct call stacks, say READY, wait
 *   workloads resident MIB      map and write MIB MiB (no huge pages), say READY, wait
 *
 * Each timed workload runs a short untimed warm-up, then its loop for MS milliseconds of
 * CLOCK_MONOTONIC, and prints one line on stderr:
 *   RESULT iters=N ns=ELAPSED ns_per_iter=X.XX
 * so process start-up and tracer attach costs are not part of the figure. The timed loop is
 * bracketed by two madvise(NULL, 0, MADV_NORMAL) calls, which change nothing but show up in a
 * tracer's output, so the harness can count the traced calls one iteration makes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WARMUP_NS 50000000ULL

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "workloads: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void marker(void)
{
	madvise(NULL, 0, MADV_NORMAL);
}

static void report(uint64_t iters, uint64_t ns)
{
	fprintf(stderr, "RESULT iters=%llu ns=%llu ns_per_iter=%.2f\n", (unsigned long long)iters,
		(unsigned long long)ns, iters ? (double)ns / (double)iters : 0.0);
}

/* --- mmap: the syscall-bound worst case ------------------------------------------------------ */

/* One page is touched, as in the hook measurements of docs/design.md (about 7 us per iteration):
 * touching all 16 would make the loop page-fault-bound (about 29 us here) and hide the cost of
 * tracing the two calls. */
#define CHUNK (64 * 1024)

static void mmap_once(void)
{
	volatile char *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	p[0] = 1;
	if (munmap((void *)p, CHUNK) != 0)
		die("munmap");
}

/* --- brk: heap growth and trimming ----------------------------------------------------------- */

static void brk_once(void)
{
	volatile char *p = sbrk(CHUNK);
	if (p == (void *)-1)
		die("sbrk up");
	p[0] = 1;
	if (sbrk(-CHUNK) == (void *)-1)
		die("sbrk down");
}

/* --- malloc: an allocator-heavy program, mostly in user space -------------------------------- */

#define SLOTS 4096
static void *slots[SLOTS];
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void malloc_once(void)
{
	uint64_t r = next_random();
	size_t slot = r % SLOTS;
	unsigned kind = (r >> 16) % 1000;
	size_t size;
	if (kind < 900)
		size = 16 + (r >> 32) % 1008; /* small */
	else if (kind < 995)
		size = 1024 + (r >> 32) % (63 * 1024); /* medium */
	else
		size = 128 * 1024 + (r >> 32) % (896 * 1024); /* large: around the mmap threshold */
	free(slots[slot]);
	char *p = malloc(size);
	if (!p)
		die("malloc");
	/* Touch the first and last page, as a program filling a buffer would. */
	p[0] = (char)r;
	p[size - 1] = (char)r;
	slots[slot] = p;
}

/* --- getppid: a bystander's syscalls --------------------------------------------------------- */

static void getppid_once(void)
{
	syscall(SYS_getppid);
}

/* --- ioctl: a bystander's ioctls (pmap-trace's program runs on every ioctl exit) ------------ */

static int ioctl_fd = -1;

static void ioctl_once(void)
{
	int unread;
	if (ioctl(ioctl_fd, FIONREAD, &unread) != 0)
		die("ioctl(FIONREAD)");
}

/* --- the timed loop -------------------------------------------------------------------------- */

static void timed(void (*once)(void), unsigned batch, uint64_t ms)
{
	uint64_t start = now_ns();
	while (now_ns() - start < WARMUP_NS)
		for (unsigned i = 0; i < batch; i++)
			once();

	uint64_t iters = 0, limit = ms * 1000000ULL, elapsed;
	marker();
	start = now_ns();
	do {
		for (unsigned i = 0; i < batch; i++)
			once();
		iters += batch;
		elapsed = now_ns() - start;
	} while (elapsed < limit);
	marker();
	report(iters, elapsed);
}

/* --- rate: a paced stream of traced calls ---------------------------------------------------- */

static void rate(uint64_t calls_per_sec, uint64_t ms)
{
	const unsigned batch = 32; /* pairs, so 64 calls between clock reads */
	uint64_t pairs = 0, limit = ms * 1000000ULL, start = now_ns(), elapsed;
	marker();
	do {
		for (unsigned i = 0; i < batch; i++) {
			void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				       -1, 0);
			if (p == MAP_FAILED)
				die("mmap");
			if (munmap(p, PAGE) != 0)
				die("munmap");
		}
		pairs += batch;
		elapsed = now_ns() - start;
		if (calls_per_sec) {
			/* Ahead of schedule: wait (sleep if it is long, else spin) until the next batch is due. */
			uint64_t due = (uint64_t)((double)(2 * pairs) * 1e9 / (double)calls_per_sec);
			while (elapsed < due && elapsed < limit) {
				if (due - elapsed > 200000) {
					struct timespec ts = { 0, (long)(due - elapsed - 100000) };
					nanosleep(&ts, NULL);
				}
				elapsed = now_ns() - start;
			}
		}
	} while (elapsed < limit);
	marker();
	fprintf(stderr, "RESULT iters=%llu ns=%llu calls=%llu calls_per_sec=%.0f\n",
		(unsigned long long)pairs, (unsigned long long)elapsed,
		(unsigned long long)(2 * pairs), (double)(2 * pairs) * 1e9 / (double)elapsed);
}

/* --- maps: a process with many mappings ------------------------------------------------------ */

static void on_signal(int sig)
{
	(void)sig;
}

static void maps(uint64_t n)
{
	/* One anonymous region of n pages whose every other page is read-only: n mappings that the
	 * kernel cannot merge. */
	char *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap (raise vm.max_map_count?)");
	for (uint64_t i = 1; i < n; i += 2)
		if (mprotect(p + i * PAGE, PAGE, PROT_READ) != 0)
			die("mprotect (raise vm.max_map_count?)");
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	fprintf(stderr, "READY pid=%d\n", (int)getpid());
	pause();
}

/* --- stacks: anonymous memory grown from many distinct call stacks --------------------------- */

/* Bits of the path number each stack encodes: 2^14 = 16384 distinct stacks at most. */
#define STACK_BITS 14

static volatile unsigned frames_left;

static void grow_left(unsigned path, int depth);
static void grow_right(unsigned path, int depth);

/* Recurses STACK_BITS levels, through grow_left or grow_right by each bit of path, then maps
 * and touches one page: every path leaves a different chain of return addresses. The counter
 * updates after each call keep the calls from becoming jumps, which would leave no frame; they
 * differ between grow_left and grow_right so that gcc does not fold the two into one function. */
static __attribute__((noinline)) void grow_step(unsigned path, int depth)
{
	if (depth == 0) {
		volatile char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("mmap");
		p[0] = 1;
		return;
	}
	if (path & 1)
		grow_left(path >> 1, depth - 1);
	else
		grow_right(path >> 1, depth - 1);
	frames_left++;
}

static __attribute__((noinline)) void grow_left(unsigned path, int depth)
{
	grow_step(path, depth);
	frames_left++;
}

static __attribute__((noinline)) void grow_right(unsigned path, int depth)
{
	grow_step(path, depth);
	frames_left += 2;
}

static void stacks(uint64_t n)
{
	if (n > (1u << STACK_BITS)) {
		fprintf(stderr, "workloads: at most %u distinct stacks\n", 1u << STACK_BITS);
		exit(2);
	}
	/* Paced (1 ms per 16 calls), so a tracer copying each caller's stack keeps up. */
	struct timespec pause_time = { 0, 1000000 };
	for (uint64_t i = 0; i < n; i++) {
		grow_step((unsigned)i, STACK_BITS);
		if (i % 16 == 15)
			nanosleep(&pause_time, NULL);
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	fprintf(stderr, "READY pid=%d\n", (int)getpid());
	pause();
}

/* Maps MIB MiB of private anonymous memory without huge pages (every page its own page-table
 * entry: the most a page walk has to read) and writes each page, then waits: what --sites reads
 * the pages of at each dump. */
static void resident(uint64_t mib)
{
	size_t len = (size_t)mib << 20;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	if (madvise(p, len, MADV_NOHUGEPAGE))
		die("madvise");
	for (size_t at = 0; at < len; at += PAGE)
		p[at] = 1;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	fprintf(stderr, "READY pid=%d at=%p len=%zu\n", (int)getpid(), (void *)p, len);
	pause();
}

static uint64_t number(const char *text)
{
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno || *end || end == text) {
		fprintf(stderr, "workloads: not a number: %s\n", text);
		exit(2);
	}
	return value;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "mmap"))
		timed(mmap_once, 16, number(argv[2]));
	else if (argc == 3 && !strcmp(argv[1], "brk"))
		timed(brk_once, 16, number(argv[2]));
	else if (argc == 3 && !strcmp(argv[1], "malloc"))
		timed(malloc_once, 1024, number(argv[2]));
	else if (argc == 3 && !strcmp(argv[1], "getppid"))
		timed(getppid_once, 256, number(argv[2]));
	else if (argc == 3 && !strcmp(argv[1], "ioctl")) {
		int fds[2];
		if (pipe(fds) != 0)
			die("pipe");
		ioctl_fd = fds[0];
		timed(ioctl_once, 256, number(argv[2]));
	}
	else if (argc == 4 && !strcmp(argv[1], "rate"))
		rate(number(argv[2]), number(argv[3]));
	else if (argc == 3 && !strcmp(argv[1], "maps"))
		maps(number(argv[2]));
	else if (argc == 3 && !strcmp(argv[1], "stacks"))
		stacks(number(argv[2]));
	else if (argc == 3 && !strcmp(argv[1], "resident"))
		resident(number(argv[2]));
	else {
		fprintf(stderr, "usage: workloads mmap|brk|malloc|getppid|ioctl MS | rate CALLS_PER_SEC MS | maps N | stacks N | resident MIB\n");
		return 2;
	}
	return 0;
}
