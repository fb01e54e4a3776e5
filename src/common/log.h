/* Logging: one process-wide sink (stderr or a file), levels DEBUG..ERROR, ISO-8601 UTC
 * timestamps with milliseconds, text or JSON lines. Thread-safe; each line is one write(2),
 * so lines from several threads never interleave. fu_log_reopen() serves SIGUSR1/logrotate. */
#ifndef FU_LOG_H
#define FU_LOG_H

#include <stdbool.h>

enum fu_log_level { FU_LOG_DEBUG, FU_LOG_INFO, FU_LOG_WARNING, FU_LOG_ERROR };

/* "DEBUG", "INFO", "WARNING" (or "WARN"), "ERROR" (or "CRITICAL"), any case. */
int fu_log_level_parse(const char *s, enum fu_log_level *out);
const char *fu_log_level_name(enum fu_log_level l);

/* Configures the sink. `file` NULL means stderr. `proc` names the process in each line
 * ("fusion", "agent"). Returns 0 or -errno (the old sink stays in place on failure). */
int fu_log_setup(const char *proc, enum fu_log_level level, bool json, const char *file);
void fu_log_set_level(enum fu_log_level level);
enum fu_log_level fu_log_get_level(void);
/* Reopens the log file (after logrotate moved it). No-op for stderr. */
int fu_log_reopen(void);
void fu_log_close(void);

void fu_log(enum fu_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define fu_debug(...) fu_log(FU_LOG_DEBUG, __VA_ARGS__)
#define fu_info(...) fu_log(FU_LOG_INFO, __VA_ARGS__)
#define fu_warn(...) fu_log(FU_LOG_WARNING, __VA_ARGS__)
#define fu_error(...) fu_log(FU_LOG_ERROR, __VA_ARGS__)

#endif
