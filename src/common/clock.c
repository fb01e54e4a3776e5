/* See clock.h. */
#include "common/clock.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static double offset;
static pthread_once_t offset_once = PTHREAD_ONCE_INIT;

static void read_offset(void)
{
    const char *s = getenv("FUSTOR_TEST_CLOCK_OFFSET");
    if (!s || !*s)
        return;
    char *end;
    double v = strtod(s, &end);
    if (*end == '\0' && isfinite(v) && fabs(v) <= 10 * 365.25 * 86400)
        offset = v;
}

double fu_clock_offset(void)
{
    pthread_once(&offset_once, read_offset);
    return offset;
}

double fu_wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9 + fu_clock_offset();
}

int fu_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

struct timespec fu_mono_deadline(double sec)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + ts.tv_nsec / 1e9 + sec;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    return ts;
}
