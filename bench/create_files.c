/* The realtime benchmark's writer: creates files in DIR at a steady RATE per second for SECS
 * seconds (open, write one byte, close: f000000, f000001, ...), then prints each file's
 * creation time (CLOCK_MONOTONIC, the clock of Python's time.perf_counter) in seconds, one
 * per line, and on stderr the rate it achieved. A Python writer tops out near 5k files/s on
 * two cores beside the agent and Fusion; this one does not limit the measurement.
 * Usage: bench_create DIR RATE SECS */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double rate = argc == 4 ? atof(argv[2]) : 0, secs = argc == 4 ? atof(argv[3]) : 0;
    if (rate <= 0 || secs <= 0) {
        fprintf(stderr, "usage: bench_create DIR RATE SECS\n");
        return 2;
    }
    size_t n = (size_t)(rate * secs);
    double *at = malloc((n ? n : 1) * sizeof(*at));
    if (!at) {
        fprintf(stderr, "bench_create: out of memory\n");
        return 1;
    }
    char path[4096];
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        /* Sleeps only when 2 ms or more ahead: shorter sleeps overshoot by more than they
         * ask for on a VM, so the files go in bursts of 2 ms, at the rate on average. */
        double target = t0 + (double)i / rate;
        double wait = target - now();
        if (wait >= 0.002) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
        snprintf(path, sizeof(path), "%s/f%06zu", argv[1], i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, "x", 1) != 1) {
            perror(path);
            free(at);
            return 1;
        }
        close(fd);
        at[i] = now();
    }
    double span = n ? at[n - 1] - t0 : 0;
    for (size_t i = 0; i < n; i++)
        printf("%.6f\n", at[i]);
    fprintf(stderr, "bench_create: %zu files in %.3f s (%.0f/s)\n", n, span,
            span > 0 ? (double)n / span : 0);
    free(at);
    return 0;
}
