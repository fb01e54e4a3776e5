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
