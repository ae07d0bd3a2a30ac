/*
 * agentic-launch: the root-side step between the server and bubblewrap, in one small exec.
 *
 * Why C: this step runs once per sandboxed program. As `sh -c '...'` + `setpriv` it cost
 * ~2.5 ms of CPU per run (two execs, dynamic linking, locale set-up); built static it is one exec
 * of a few syscalls. It must stay tiny and obviously correct: it runs as root on input we build.
 *
 *   agentic-launch [-t TASKS_FILE]... [-r NAME=VALUE]... [-n NETNS_FILE] [-s FD] -u UID -g GID -- PROG ARG...
 *       Join each cgroup (write "0" to its `tasks` file: moves this thread only, which skips the
 *       kernel's threadgroup lock that makes `cgroup.procs` cost 10-20 ms), lower each rlimit
 *       (core, cpu, fsize, nproc, data, as; soft = hard = VALUE), enter the network namespace
 *       bound at NETNS_FILE, drop every group and to UID/GID, set no_new_privs, run PROG as a
 *       child and reap it and every orphan it leaves (subreaper); exit with PROG's status.
 *       With -s, PROG's status is also written to FD (decimal, newline) as soon as PROG ends,
 *       before the orphans are reaped: bwrap ends with its program, but the namespace's init, an
 *       orphan here, ends only once its pid and mount namespaces are torn down (milliseconds).
 *   agentic-launch -m NETNS_FILE
 *       Create a network namespace (only a down loopback) and bind it on NETNS_FILE (an existing
 *       empty file), so runs can reuse it instead of paying for a new one each time.
 *
 * Any failure before exec prints "agentic-sandbox: setup failed: ..." and exits 125.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_EXIT 125
#define MAX_ITEMS 16

static void fail(const char *what, const char *arg) {
    fprintf(stderr, "agentic-sandbox: setup failed: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
    _exit(SETUP_EXIT);
}

static void usage(const char *why) {
    errno = EINVAL;
    fail("bad launcher arguments:", why);
}

static long long parse_num(const char *text) {
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0' || value < 0) usage(text);
    return value;
}

static int rlimit_resource(const char *name) {
    static const struct { const char *name; int resource; } names[] = {
        {"core", RLIMIT_CORE}, {"cpu", RLIMIT_CPU}, {"fsize", RLIMIT_FSIZE},
        {"nproc", RLIMIT_NPROC}, {"data", RLIMIT_DATA}, {"as", RLIMIT_AS},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i].name, name) == 0) return names[i].resource;
    usage(name);
    return -1;
}

static void make_netns(const char *target) {
    if (unshare(CLONE_NEWNET) != 0) fail("unshare(CLONE_NEWNET)", NULL);
    if (mount("/proc/self/ns/net", target, NULL, MS_BIND, NULL) != 0) fail("bind netns on", target);
}

int main(int argc, char **argv) {
    const char *tasks[MAX_ITEMS], *limits[MAX_ITEMS], *netns = NULL;
    int n_tasks = 0, n_limits = 0, opt, status_fd = -1;
    long long uid = -1, gid = -1;

    while ((opt = getopt(argc, argv, "+t:r:n:s:u:g:m:")) != -1) {
        switch (opt) {
        case 't': if (n_tasks == MAX_ITEMS) usage("too many -t"); tasks[n_tasks++] = optarg; break;
        case 'r': if (n_limits == MAX_ITEMS) usage("too many -r"); limits[n_limits++] = optarg; break;
        case 'n': netns = optarg; break;
        case 's': status_fd = (int)parse_num(optarg); break;
        case 'u': uid = parse_num(optarg); break;
        case 'g': gid = parse_num(optarg); break;
        case 'm': make_netns(optarg); return 0;
        default: usage("unknown option");
        }
    }
    if (uid <= 0 || gid <= 0 || optind >= argc) usage("need -u UID -g GID (not root) and a program");
    if (status_fd >= 0 && fcntl(status_fd, F_SETFD, FD_CLOEXEC) != 0) fail("status fd", NULL);

    for (int i = 0; i < n_tasks; i++) {
        int fd = open(tasks[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1) fail("join cgroup", tasks[i]);
        close(fd);
    }
    for (int i = 0; i < n_limits; i++) {
        char name[16];
        const char *eq = strchr(limits[i], '=');
        if (!eq || (size_t)(eq - limits[i]) >= sizeof name) usage(limits[i]);
        memcpy(name, limits[i], (size_t)(eq - limits[i]));
        name[eq - limits[i]] = '\0';
        struct rlimit rl = {(rlim_t)parse_num(eq + 1), (rlim_t)parse_num(eq + 1)};
        if (setrlimit(rlimit_resource(name), &rl) != 0) fail("setrlimit", limits[i]);
    }
    if (netns) {
        int fd = open(netns, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) fail("enter network namespace", netns);
        close(fd);
    }
    if (setgroups(0, NULL) != 0) fail("setgroups", NULL);
    if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) fail("setresgid", NULL);
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) fail("setresuid", NULL);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs", NULL);
    /* Stay as a subreaper and run PROG as a child: bwrap's monitor exits without reaping the
     * namespace's init, which then lingered as a zombie of host pid 1 and kept counting in the
     * run's pids cgroup (and RLIMIT_NPROC). Here every orphan of the run is reaped before we exit. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) fail("subreaper", NULL);
    pid_t child = fork();
    if (child < 0) fail("fork", NULL);
    if (child == 0) {
        execv(argv[optind], &argv[optind]);
        fail("exec", argv[optind]);
    }
    int code = SETUP_EXIT, status;
    for (;;) {
        pid_t done = wait(&status);
        if (done < 0) {
            if (errno == EINTR) continue;
            break; /* ECHILD: nothing of the run is left */
        }
        if (done == child) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (status_fd >= 0) {
                dprintf(status_fd, "%d\n", code);
                close(status_fd);
            }
        }
    }
    return code;
}
