/* File I/O inside the preopened directory "/sandbox": create, write, read
 * back, rename, list, unlink. Prints each step; exits 1 on any failure. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what) {
    perror(what);
    return 1;
}

int main(void) {
    FILE *f = fopen("/sandbox/note.txt", "w");
    if (!f) return fail("create");
    fputs("backstop was here\n", f);
    fclose(f);
    printf("created note.txt\n");

    char line[64] = {0};
    f = fopen("/sandbox/note.txt", "r");
    if (!f || !fgets(line, sizeof line, f)) return fail("read back");
    fclose(f);
    printf("read back: %s", line);

    if (rename("/sandbox/note.txt", "/sandbox/renamed.txt") != 0) return fail("rename");
    printf("renamed to renamed.txt\n");

    DIR *dir = opendir("/sandbox");
    if (!dir) return fail("opendir");
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..")) {
            printf("entry: %s\n", entry->d_name);
        }
    }
    closedir(dir);

    if (unlink("/sandbox/renamed.txt") != 0) return fail("unlink");
    printf("unlinked renamed.txt\n");
    return 0;
}
