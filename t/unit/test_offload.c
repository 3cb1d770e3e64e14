/* offload.c with a real libev loop and its real thread: each job runs off
 * the loop, comes back to the loop, in the order handed over; stopping
 * waits for the jobs in flight and hands every one back; the thread
 * starts again for the next job; an idle hook runs once after work. */
#include "config.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "stompd/offload.h"

#define NJOBS 200

struct job {
    struct offload_job base;
    int index;
    unsigned sleep_us;
    pthread_t ran_on;
    int ran_order;
};

static pthread_t loop_thread;
static struct ev_loop *loop;
static int ran, done;
static int done_order[NJOBS];
static bool done_on_loop = true, ran_off_loop = true;

static void job_run(struct offload_job *b)
{
    struct job *j = (struct job *)b;
    if (j->sleep_us)
        usleep(j->sleep_us);
    j->ran_on = pthread_self();
    j->ran_order = __atomic_fetch_add(&ran, 1, __ATOMIC_SEQ_CST);
}

static void job_done(struct offload_job *b)
{
    struct job *j = (struct job *)b;
    if (!pthread_equal(pthread_self(), loop_thread))
        done_on_loop = false;
    if (pthread_equal(j->ran_on, loop_thread))
        ran_off_loop = false;
    assert_int_equal(j->ran_order, j->index);
    done_order[done++] = j->index;
    free(j);
}

static struct job *new_job(int index, unsigned sleep_us)
{
    struct job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->base.run = job_run;
    j->base.done = job_done;
    j->index = index;
    j->sleep_us = sleep_us;
    return j;
}

/* Run the loop until n jobs are back (each wakes it through the offload's
 * ev_async), within a generous deadline. */
static void run_until_done(int n)
{
    ev_tstamp deadline = ev_time() + 60;
    while (done < n && ev_time() < deadline)
        ev_run(loop, EVRUN_ONCE);
    assert_int_equal(done, n);
}

static int idle_calls;

/* Wait (generously) until the idle hook has run n times in all. */
static void wait_idle_calls(int n)
{
    ev_tstamp deadline = ev_time() + 60;
    while (__atomic_load_n(&idle_calls, __ATOMIC_SEQ_CST) < n && ev_time() < deadline)
        usleep(10000);
    assert_int_equal(__atomic_load_n(&idle_calls, __ATOMIC_SEQ_CST), n);
}

static int setup(void **state)
{
    (void)state;
    loop_thread = pthread_self();
    loop = ev_loop_new(EVFLAG_AUTO);
    ran = done = 0;
    done_on_loop = ran_off_loop = true;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    offload_stop();
    ev_loop_destroy(loop);
    return 0;
}

static void test_jobs_run_off_the_loop_and_come_back_in_order(void **state)
{
    (void)state;
    for (int i = 0; i < NJOBS; i++)
        offload_submit(loop, &new_job(i, i % 10 == 0 ? 200 : 0)->base);
    assert_true(offload_pending() > 0);
    run_until_done(NJOBS);
    assert_int_equal(offload_pending(), 0);
    assert_true(ran_off_loop);
    assert_true(done_on_loop);
    for (int i = 0; i < NJOBS; i++)
        assert_int_equal(done_order[i], i);
}

static void test_stop_hands_back_every_job_in_flight(void **state)
{
    (void)state;
    /* slow jobs, and the loop never runs: stop itself must wait for them
     * and call each one's done, in order */
    for (int i = 0; i < 20; i++)
        offload_submit(loop, &new_job(i, 2000)->base);
    offload_stop();
    assert_int_equal(ran, 20);
    assert_int_equal(done, 20);
    assert_int_equal(offload_pending(), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(done_order[i], i);
    assert_true(done_on_loop);
    /* and the next job starts the thread again (a node that is master
     * again) */
    offload_submit(loop, &new_job(20, 0)->base);
    run_until_done(21);
    assert_true(ran_off_loop);
}

static bool idle_off_loop = true;

static void on_idle(void)
{
    if (pthread_equal(pthread_self(), loop_thread))
        idle_off_loop = false;
    __atomic_fetch_add(&idle_calls, 1, __ATOMIC_SEQ_CST);
}

static void test_idle_hook_runs_once_after_work(void **state)
{
    (void)state;
    idle_calls = 0;
    offload_set_idle(on_idle);
    offload_submit(loop, &new_job(0, 0)->base);
    run_until_done(1);
    /* about a second after the last job, on the thread */
    wait_idle_calls(1);
    assert_true(idle_off_loop);
    /* and not again without more work: the thread sleeps until a job
     * comes (3 s is three idle periods) */
    usleep(3000000);
    assert_int_equal(__atomic_load_n(&idle_calls, __ATOMIC_SEQ_CST), 1);
    offload_submit(loop, &new_job(1, 0)->base);
    run_until_done(2);
    wait_idle_calls(2);
    offload_set_idle(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobs_run_off_the_loop_and_come_back_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_hands_back_every_job_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_hook_runs_once_after_work, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
