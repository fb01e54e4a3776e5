/* The pidfile lock and the signal flags: one holder at a time even under concurrent
 * start/stop, probes that never disturb a start, stale files taken over, and signals that
 * are reported once each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64], pidpath[128], marker[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/fu-test-daemon-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(pidpath, sizeof(pidpath), "%s/x.pid", dir);
    snprintf(marker, sizeof(marker), "%s/holder", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(pidpath);
    unlink(marker);
    rmdir(dir);
    return 0;
}

static void test_second_acquire_fails_and_names_the_holder(void **state)
{
    (void)state;
    struct fu_pidfile a, b;
    pid_t holder;
    assert_int_equal(fu_pidfile_acquire(&a, pidpath, &holder), 0);
    assert_int_equal(fu_pidfile_acquire(&b, pidpath, &holder), -EEXIST);
    assert_int_equal(holder, getpid());
    pid_t pid;
    assert_int_equal(fu_pidfile_probe(pidpath, &pid), FU_PID_RUNNING);
    assert_int_equal(pid, getpid());
    fu_pidfile_release(&a);
    assert_int_equal(fu_pidfile_probe(pidpath, &pid), FU_PID_NONE);
}

static void test_stale_pidfile_is_detected_and_taken_over(void **state)
{
    (void)state;
    FILE *f = fopen(pidpath, "w");
    assert_non_null(f);
    fputs("4242\n", f);
    fclose(f);
    pid_t pid;
    assert_int_equal(fu_pidfile_probe(pidpath, &pid), FU_PID_STALE);
    assert_int_equal(pid, 4242);
    struct fu_pidfile a;
    assert_int_equal(fu_pidfile_acquire(&a, pidpath, &pid), 0);
    assert_int_equal(fu_pidfile_probe(pidpath, &pid), FU_PID_RUNNING);
    assert_int_equal(pid, getpid()); /* our pid replaced the dead one at once */
    fu_pidfile_release(&a);
}

static void test_garbage_pid_reads_as_zero(void **state)
{
    (void)state;
    FILE *f = fopen(pidpath, "w");
    assert_non_null(f);
    fputs("4294967297\n", f);
    fclose(f);
    pid_t pid = 1;
    assert_int_equal(fu_pidfile_probe(pidpath, &pid), FU_PID_STALE);
    assert_int_equal(pid, 0);
}

/* Child loops: acquire, prove exclusivity with an O_EXCL marker, release. Exit 1 on overlap. */
static void contend(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        struct fu_pidfile pf;
        pid_t holder;
        int rc = fu_pidfile_acquire(&pf, pidpath, &holder);
        if (rc == -EEXIST)
            continue;
        if (rc < 0)
            _exit(2);
        int fd = open(marker, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0)
            _exit(1); /* somebody else believes it holds the lock too */
        close(fd);
        usleep(50);
        unlink(marker);
        fu_pidfile_release(&pf);
    }
    _exit(0);
}

static void test_concurrent_start_stop_never_has_two_holders(void **state)
{
    (void)state;
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0)
            contend(1500);
    }
    for (int i = 0; i < 4; i++) {
        int st;
        assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

static void test_probing_never_makes_a_start_fail(void **state)
{
    (void)state;
    pid_t prober = fork();
    assert_true(prober >= 0);
    if (prober == 0) {
        for (;;) {
            pid_t p;
            fu_pidfile_probe(pidpath, &p);
        }
    }
    int failures = 0;
    for (int i = 0; i < 3000; i++) {
        struct fu_pidfile pf;
        pid_t holder;
        if (fu_pidfile_acquire(&pf, pidpath, &holder) != 0)
            failures++;
        else
            fu_pidfile_release(&pf);
    }
    kill(prober, SIGKILL);
    waitpid(prober, NULL, 0);
    assert_int_equal(failures, 0);
}

static void test_each_signal_is_reported_once(void **state)
{
    (void)state;
    assert_int_equal(fu_signals_install(), 0);
    assert_true(fu_signals_fd() >= 0);
    assert_int_equal(fu_signals_take(), 0);
    raise(SIGHUP);
    raise(SIGUSR1);
    raise(SIGUSR2);
    assert_int_equal(fu_signals_take(), FU_SIG_HUP | FU_SIG_USR1 | FU_SIG_USR2);
    assert_int_equal(fu_signals_take(), 0);
    raise(SIGTERM);
    raise(SIGINT);
    assert_int_equal(fu_signals_take(), FU_SIG_TERM);
    /* The self-pipe was drained: nothing left to read. */
    char c;
    assert_int_equal(read(fu_signals_fd(), &c, 1), -1);
    assert_int_equal(errno, EAGAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_acquire_fails_and_names_the_holder, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stale_pidfile_is_detected_and_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_garbage_pid_reads_as_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_start_stop_never_has_two_holders, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_probing_never_makes_a_start_fail, setup, teardown),
        cmocka_unit_test(test_each_signal_is_reported_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
