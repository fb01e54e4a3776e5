/* Replays a fuzz corpus through a harness without libFuzzer, so `make test` runs every saved
 * input under the normal and the sanitizer builds. Arguments: files or directories. */
#include "common/buf.h"
#include "common/fsutil.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    struct fu_buf b = FU_BUF_INIT;
    int rc = fu_read_file(path, 64u << 20, &b);
    if (rc < 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    /* An exact-size copy, so ASan sees reads past the end of the input. */
    uint8_t *copy = malloc(b.len ? b.len : 1);
    if (!copy)
        return -1;
    if (b.len)
        memcpy(copy, b.data, b.len);
    LLVMFuzzerTestOneInput(copy, b.len);
    free(copy);
    fu_buf_free(&b);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 0;
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "replay: no such corpus %s\n", argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i]);
            n++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char *p = fu_path_join(argv[i], e->d_name);
            bad |= run_file(p);
            free(p);
            n++;
        }
        if (d)
            closedir(d);
    }
    printf("replayed %zu inputs\n", n);
    return bad || n == 0 ? 1 : 0;
}
