/* Process lifecycle: the locked pidfile, signal flags with a self-pipe for the main loop,
 * and detaching into the background with a readiness report back to the launching shell. */
#ifndef FU_DAEMON_H
#define FU_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>

/* A pidfile write-locked (an open-file-description lock) for the life of the process: a
 * second instance fails to take the lock, and a pidfile whose lock nobody holds is stale. */
struct fu_pidfile {
    int fd;     /* -1 when not held */
    char *path; /* owned */
};

enum fu_pid_state { FU_PID_NONE, FU_PID_RUNNING, FU_PID_STALE };

/* Reads the state of the pidfile at `path`; *pid gets the recorded pid (0 if unreadable). */
enum fu_pid_state fu_pidfile_probe(const char *path, pid_t *pid);
/* Takes the lock and writes our pid. 0 on success; -EEXIST when another process holds it
 * (*holder = its pid); other -errno on I/O errors. A stale file is taken over. */
int fu_pidfile_acquire(struct fu_pidfile *pf, const char *path, pid_t *holder);
int fu_pidfile_write(struct fu_pidfile *pf, pid_t pid);
/* Removes the file and drops the lock. Safe to call when not held. */
void fu_pidfile_release(struct fu_pidfile *pf);
/* Closes our descriptor without removing the file: the launching process uses it after
 * fu_daemonize, where the daemon's copy of the descriptor keeps the lock. */
void fu_pidfile_forget(struct fu_pidfile *pf);

enum {
    FU_SIG_HUP = 1 << 0,
    FU_SIG_USR1 = 1 << 1,
    FU_SIG_TERM = 1 << 2,
    FU_SIG_USR2 = 1 << 3, /* a `backup` request waits in run/ (service.c) */
};
/* Installs handlers for SIGHUP, SIGUSR1, SIGUSR2, SIGTERM and SIGINT that only record the
 * signal and wake the self-pipe; SIGPIPE is ignored. */
int fu_signals_install(void);
int fu_signals_fd(void); /* readable when a signal arrived */
/* The signals received since the last call (FU_SIG_* bits); drains the self-pipe. */
unsigned fu_signals_take(void);
/* As if those signals had arrived (FU_SIG_* bits): what a thread of the runtime calls to
 * ask the main loop for a reload, safe even where no handler is installed. */
void fu_signals_raise(unsigned flags);

/* Detaches: fork, setsid, fork. Returns 0 in the daemon, with *report_fd open for
 * fu_daemon_report(); its stdin is /dev/null and stdout/stderr append to `out_path`. Returns
 * 1 in the launching process once the daemon has reported (or died): the report is printed
 * and *exit_code is 0 if the daemon said it is up, 1 otherwise. -errno if fork failed. */
int fu_daemonize(const char *out_path, int *report_fd, int *exit_code);
/* Tells the launching process how start-up went, then closes the channel. */
void fu_daemon_report(int *report_fd, bool ok, const char *msg);

#endif
