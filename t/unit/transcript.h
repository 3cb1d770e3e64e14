/* A transcript of what recording stubs were asked, "event;event;...":
 * tests compare it with what they expect after each step. */
#ifndef TRANSCRIPT_H
#define TRANSCRIPT_H

extern char transcript[4096];
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The transcript since the last call must be exactly want (cmocka
 * failure otherwise); then it starts again empty. */
void expect_transcript(const char *want);

#endif
