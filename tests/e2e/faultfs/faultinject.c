/* faultinject: an LD_PRELOAD shim that makes chosen writes fail, for tests.
 *
 * Environment (read at the first intercepted call):
 *   FAULT_PATH     only files whose path starts with this prefix are faulted
 *   FAULT_CONTROL  a file: while it exists, faults are on; its first word
 *                  names the errno to return ("EIO" when empty or unknown,
 *                  or "ENOSPC", "EROFS", "EDQUOT"), or "BLOCK": the call
 *                  waits (a stalled disk) until the control file is gone or
 *                  names something else, then runs; further words restrict
 *                  the fault to those calls ("write", "fsync"; none: both).
 *                  A call that blocks first creates FAULT_CONTROL.blocked,
 *                  so the test knows the stall has begun.
 *                  "write" covers write, pwrite, pwrite64, writev, pwritev;
 *                  "fsync" covers fsync and fdatasync.
 * The test creates and removes the control file while the process runs,
 * so a fault comes and goes without a restart. SQLite writes through
 * pwrite64/write and syncs with fdatasync/fsync; Python's os.write and
 * file objects call write(); all go through these symbols.
 *
 * Built by the test: gcc -shared -fPIC -O2 -o faultinject.so faultinject.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_FSYNC = 2 };
#define BLOCKED (-1)

static const char *env_or_null(const char *name) {
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

/* The errno to fail call class `op` on `fd` with, or 0 (no fault). */
static int fault_for(int fd, int op) {
    static const char *prefix, *control;
    static int initialised;
    if (!initialised) {
        prefix = env_or_null("FAULT_PATH");
        control = env_or_null("FAULT_CONTROL");
        initialised = 1;
    }
    if (!prefix || !control)
        return 0;
    int saved = errno;
    int cfd = open(control, O_RDONLY | O_CLOEXEC);
    if (cfd < 0) {                       /* no control file: faults are off */
        errno = saved;
        return 0;
    }
    char spec[128];
    ssize_t n = read(cfd, spec, sizeof spec - 1);
    close(cfd);
    spec[n > 0 ? n : 0] = '\0';

    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    errno = saved;
    if (len <= 0)
        return 0;
    path[len] = '\0';
    if (strncmp(path, prefix, strlen(prefix)) != 0)
        return 0;

    int code = EIO, ops = 0;
    char *save = NULL;
    int first = 1;
    for (char *tok = strtok_r(spec, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (first) {
            first = 0;
            if (!strcmp(tok, "ENOSPC")) { code = ENOSPC; continue; }
            if (!strcmp(tok, "EROFS")) { code = EROFS; continue; }
            if (!strcmp(tok, "EDQUOT")) { code = EDQUOT; continue; }
            if (!strcmp(tok, "EIO")) { code = EIO; continue; }
            if (!strcmp(tok, "BLOCK")) { code = BLOCKED; continue; }
        }
        if (!strcmp(tok, "write")) ops |= OP_WRITE;
        else if (!strcmp(tok, "fsync")) ops |= OP_FSYNC;
    }
    if (ops && !(ops & op))
        return 0;
    return code;
}

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwrite64_fn)(int, const void *, size_t, off64_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef int (*sync_fn)(int);

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name, type) \
    static type real_##name; \
    if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

/* BLOCK: say so once (FAULT_CONTROL.blocked), then wait while it lasts. */
static void stall(int fd, int op) {
    char marker[4200];
    snprintf(marker, sizeof marker, "%s.blocked", getenv("FAULT_CONTROL"));
    int saved = errno;
    int m = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (m >= 0)
        close(m);
    struct timespec pause = {0, 20 * 1000 * 1000};
    while (fault_for(fd, op) == BLOCKED)
        nanosleep(&pause, NULL);
    errno = saved;
}

#define FAULT(fd, op) do { int e_ = fault_for((fd), (op)); \
    if (e_ == BLOCKED) stall((fd), (op)); \
    else if (e_) { errno = e_; return -1; } } while (0)

ssize_t write(int fd, const void *buf, size_t count) {
    REAL(write, write_fn);
    FAULT(fd, OP_WRITE);
    return real_write(fd, buf, count);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    REAL(pwrite, pwrite_fn);
    FAULT(fd, OP_WRITE);
    return real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    REAL(pwrite64, pwrite64_fn);
    FAULT(fd, OP_WRITE);
    return real_pwrite64(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    REAL(writev, writev_fn);
    FAULT(fd, OP_WRITE);
    return real_writev(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset) {
    REAL(pwritev, pwritev_fn);
    FAULT(fd, OP_WRITE);
    return real_pwritev(fd, iov, iovcnt, offset);
}

int fsync(int fd) {
    REAL(fsync, sync_fn);
    FAULT(fd, OP_FSYNC);
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync, sync_fn);
    FAULT(fd, OP_FSYNC);
    return real_fdatasync(fd);
}
