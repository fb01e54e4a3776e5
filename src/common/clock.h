/* The agent's wall clock: CLOCK_REALTIME plus a test-only offset. End-to-end tests give an
 * agent a wrong clock, as a host whose clock is badly set has, through the environment
 * variable FUSTOR_TEST_CLOCK_OFFSET (seconds, e.g. 7200 or -3600) instead of libfaketime,
 * which would also shift the storage's timestamps that bindfs passes through. */
#ifndef FUSTOR_COMMON_CLOCK_H
#define FUSTOR_COMMON_CLOCK_H

#include <pthread.h>
#include <time.h>

/* The offset in effect: 0 unless FUSTOR_TEST_CLOCK_OFFSET holds a finite number of seconds
 * within ten years. Read once. */
double fu_clock_offset(void);

/* Seconds since the epoch on this process's clock, the offset included. */
double fu_wall_clock(void);

/* Inits a condition variable whose timed waits count on CLOCK_MONOTONIC: a jump of the wall
 * clock neither cuts them short nor stretches them. Returns pthread_cond_init's result. */
int fu_cond_init_monotonic(pthread_cond_t *cv);
/* CLOCK_MONOTONIC `sec` seconds from now: the deadline of a wait on such a variable. */
struct timespec fu_mono_deadline(double sec);

#endif
