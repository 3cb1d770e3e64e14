/* The recording stubs' transcript (see transcript.h). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "transcript.h"

char transcript[4096];

void say(const char *fmt, ...)
{
    size_t n = strlen(transcript);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(transcript + n, sizeof transcript - n, fmt, ap);
    va_end(ap);
    n = strlen(transcript);
    snprintf(transcript + n, sizeof transcript - n, ";");
}

void expect_transcript(const char *want)
{
    if (strcmp(transcript, want) != 0)
        fail_msg("transcript\n  got:  %s\n  want: %s", transcript, want);
    transcript[0] = '\0';
}
