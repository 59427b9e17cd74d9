/* Tries to leave the preopened directory "/sandbox" every way it can:
 * "..", an absolute path, a symlink pointing outside, a hard link to a file
 * outside, and a rename to outside. Prints "blocked" or "ESCAPED" for each;
 * exits 0 only if every attempt was blocked. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int escaped = 0;

static void report(const char *what, int ok) {
    if (ok) {
        printf("ESCAPED: %s\n", what);
        escaped = 1;
    } else {
        printf("blocked: %s (%s)\n", what, strerror(errno));
    }
}

int main(void) {
    int fd = open("/sandbox/../outside.txt", O_RDONLY);
    report("open ../outside.txt", fd >= 0);
    fd = open("/etc/passwd", O_RDONLY);
    report("open /etc/passwd", fd >= 0);

    if (symlink("/etc/passwd", "/sandbox/link") == 0 || errno == EEXIST) {
        fd = open("/sandbox/link", O_RDONLY);
        report("open a symlink to /etc/passwd", fd >= 0);
        unlink("/sandbox/link");
    } else {
        report("create a symlink to /etc/passwd", 0);
    }
    if (symlink("../outside.txt", "/sandbox/rel") == 0) {
        fd = open("/sandbox/rel", O_RDONLY);
        report("open a symlink to ../outside.txt", fd >= 0);
        unlink("/sandbox/rel");
    } else {
        report("create a symlink to ../outside.txt", 0);
    }

    report("hard link ../outside.txt into the sandbox",
           link("/sandbox/../outside.txt", "/sandbox/hard") == 0);

    FILE *f = fopen("/sandbox/mine.txt", "w");
    if (f) {
        fputs("mine\n", f);
        fclose(f);
    }
    report("rename a file to ../moved.txt",
           rename("/sandbox/mine.txt", "/sandbox/../moved.txt") == 0);
    unlink("/sandbox/mine.txt");
    return escaped;
}
