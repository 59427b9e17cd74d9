/* Reads the files named on the command line from a directory that may be
 * preopened read-only, printing each one's size and contents; then, if the
 * last argument is "create", tries to create DIR/created.txt (the first
 * argument's directory) and says whether that was refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int last = argc - 1;
    int create = argc > 1 && strcmp(argv[last], "create") == 0;
    for (int i = 1; i < argc - create; i++) {
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) {
            printf("%s: open failed: %s\n", argv[i], strerror(errno));
            return 1;
        }
        char buffer[256];
        ssize_t n = read(fd, buffer, sizeof buffer - 1);
        close(fd);
        if (n < 0) return 1;
        buffer[n] = 0;
        printf("%s (%d bytes): %s", argv[i], (int)n, buffer);
    }
    if (create && argc > 2) {
        char path[512];
        const char *slash = strrchr(argv[1], '/');
        int dir_len = slash ? (int)(slash - argv[1]) : 0;
        snprintf(path, sizeof path, "%.*s/created.txt", dir_len, argv[1]);
        int fd = open(path, O_WRONLY | O_CREAT, 0644);
        if (fd < 0) {
            printf("create: refused (%s)\n", strerror(errno));
        } else {
            close(fd);
            printf("create: ok\n");
        }
    }
    return 0;
}
