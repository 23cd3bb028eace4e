/*
 * bkwriter.c: the background data writer (see blockkern.h, "Background
 * writer", for the contract). C99 + POSIX threads + Linux sync_file_range.
 *
 * One worker thread per writer takes jobs in submission order from a
 * singly linked FIFO under one mutex. Tickets are consecutive from 1, so
 * "every job up to ticket t is done" is the single counter `done`.
 * Grouping: a submit wakes an idle worker only once `signal_bytes` have
 * been queued since its last wake-up (or when somebody waits), so a
 * stream of 1 MiB writes costs one wake-up per group, not one per write.
 */
#define _GNU_SOURCE 1 /* sync_file_range */

#include "blockkern.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

struct bk_job {
    int64_t off;
    const uint8_t *buf;
    size_t len;
    size_t block_size;          /* of the digests, with algo */
    int algo;                   /* BK_HASH_NONE / _XXH128 / _SHA256 */
    uint8_t *out;               /* digests of buf's blocks, or NULL */
    int64_t ticket;
    struct bk_job *next;
};

struct bk_writer {
    int fd;
    size_t signal_bytes;
    int64_t hint_bytes;

    pthread_mutex_t mu;
    pthread_cond_t work;        /* the worker waits here for jobs */
    pthread_cond_t progress;    /* waiters wait here for `done` */
    struct bk_job *head, *tail;
    int64_t submitted;          /* last ticket handed out */
    int64_t done;               /* every job <= done is written (or failed) */
    size_t unsignalled;         /* bytes queued since the worker was last woken */
    int idle;                   /* the worker is waiting on `work` */
    int waiters;
    int stop;
    int err;                    /* first errno since bk_writer_take_error */
    int may_idle;               /* the worker may run as SCHED_IDLE (can_raise) */
    int boosted;                /* raised by a waiter; 1 at start = "lower me" */
    pthread_t thread;

    /* worker-only: contiguous written range not yet hinted */
    int64_t hint_off, hint_len;
};

static int write_all(int fd, const uint8_t *buf, size_t len, int64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO;
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static void hint_after(struct bk_writer *w, int64_t off, int64_t len)
{
    if (w->hint_bytes <= 0)
        return;
    if (w->hint_len > 0 && w->hint_off + w->hint_len == off) {
        w->hint_len += len;
    } else {
        if (w->hint_len > 0)
            bk_start_writeback(w->fd, w->hint_off, w->hint_len);
        w->hint_off = off;
        w->hint_len = len;
    }
    if (w->hint_len >= w->hint_bytes) {
        bk_start_writeback(w->fd, w->hint_off, w->hint_len);
        w->hint_len = 0;
    }
}

/* Priority. The worker takes only CPU time nobody else wants (SCHED_IDLE):
 * on a small machine the other cores run the processes whose writes these
 * are, and a normal-priority worker measurably delayed them. But a thread
 * that waits for the worker must not wait for idle time (on a loaded machine
 * a SCHED_IDLE thread gets almost none: priority inversion), so a waiter
 * raises the worker to SCHED_OTHER and the worker lowers itself again once
 * its queue is empty. Raising needs CAP_SYS_NICE or an RLIMIT_NICE of 20;
 * without them the worker never lowers itself. Linux applies the policy to
 * one thread; a failed call leaves the worker at normal priority. */
static int can_raise(void)
{
    struct rlimit rl;
    if (geteuid() == 0)
        return 1;
    return getrlimit(RLIMIT_NICE, &rl) == 0 && (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 20);
}

static void lower_priority(struct bk_writer *w)
{
    struct sched_param sp = {0};
    if (w->may_idle)
        (void)sched_setscheduler(0, SCHED_IDLE, &sp);
}

static void raise_priority(struct bk_writer *w)
{
    struct sched_param sp = {0};
    if (w->may_idle && !w->boosted) {
        (void)pthread_setschedparam(w->thread, SCHED_OTHER, &sp);
        w->boosted = 1;
    }
}

static void *worker(void *arg)
{
    struct bk_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->head == NULL && !w->stop) {
            if (w->boosted) {
                lower_priority(w);
                w->boosted = 0;
            }
            w->idle = 1;
            w->unsignalled = 0;
            pthread_cond_wait(&w->work, &w->mu);
            w->idle = 0;
        }
        if (w->head == NULL)
            break;                              /* stop, queue empty */
        struct bk_job *job = w->head;
        w->head = job->next;
        if (w->head == NULL)
            w->tail = NULL;
        pthread_mutex_unlock(&w->mu);

        int rc = 0;
        if (job->algo == BK_HASH_XXH128)
            rc = -bk_xxh128_many(job->buf, job->len, job->block_size, job->out);
        else if (job->algo == BK_HASH_SHA256)
            rc = -bk_sha256_many(job->buf, job->len, job->block_size, job->out, 1);
        if (rc == 0)
            rc = write_all(w->fd, job->buf, job->len, job->off);
        if (rc == 0)
            hint_after(w, job->off, (int64_t)job->len);

        pthread_mutex_lock(&w->mu);
        if (rc != 0 && w->err == 0)
            w->err = rc;
        w->done = job->ticket;
        free(job);
        if (w->waiters)
            pthread_cond_broadcast(&w->progress);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

bk_writer *bk_writer_new(int fd, size_t signal_bytes, int64_t hint_bytes)
{
    struct bk_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->fd = fd;
    w->signal_bytes = signal_bytes;
    w->hint_bytes = hint_bytes;
    w->may_idle = can_raise();
    w->boosted = 1;             /* the worker lowers itself before its first wait */
    if (pthread_mutex_init(&w->mu, NULL) != 0)
        goto fail_mu;
    if (pthread_cond_init(&w->work, NULL) != 0)
        goto fail_work;
    if (pthread_cond_init(&w->progress, NULL) != 0)
        goto fail_progress;
    if (pthread_create(&w->thread, NULL, worker, w) != 0)
        goto fail_thread;
    return w;
fail_thread:
    pthread_cond_destroy(&w->progress);
fail_progress:
    pthread_cond_destroy(&w->work);
fail_work:
    pthread_mutex_destroy(&w->mu);
fail_mu:
    free(w);
    return NULL;
}

int64_t bk_writer_submit(bk_writer *w, int64_t off, const uint8_t *buf, size_t len,
                         int algo, size_t block_size, uint8_t *out)
{
    if (algo != BK_HASH_NONE && (block_size == 0 || out == NULL))
        return -EINVAL;
    struct bk_job *job = malloc(sizeof *job);
    if (job == NULL)
        return -ENOMEM;
    job->off = off;
    job->buf = buf;
    job->len = len;
    job->algo = algo;
    job->block_size = block_size;
    job->out = out;
    job->next = NULL;
    pthread_mutex_lock(&w->mu);
    job->ticket = ++w->submitted;
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    w->unsignalled += len;
    if (w->idle && w->unsignalled >= w->signal_bytes) {
        w->unsignalled = 0;
        pthread_cond_signal(&w->work);
    }
    int64_t t = job->ticket;
    pthread_mutex_unlock(&w->mu);
    return t;
}

int64_t bk_writer_done(bk_writer *w)
{
    pthread_mutex_lock(&w->mu);
    int64_t d = w->done;
    pthread_mutex_unlock(&w->mu);
    return d;
}

void bk_writer_wait(bk_writer *w, int64_t ticket)
{
    pthread_mutex_lock(&w->mu);
    if (w->done < ticket) {
        if (w->idle && w->head != NULL) {
            w->unsignalled = 0;
            pthread_cond_signal(&w->work);
        }
        raise_priority(w);
        w->waiters++;
        while (w->done < ticket)
            pthread_cond_wait(&w->progress, &w->mu);
        w->waiters--;
    }
    pthread_mutex_unlock(&w->mu);
}

static int read_error(bk_writer *w, int clear)
{
    pthread_mutex_lock(&w->mu);
    int e = w->err;
    if (clear)
        w->err = 0;
    pthread_mutex_unlock(&w->mu);
    return e;
}

int bk_writer_error(bk_writer *w)
{
    return read_error(w, 0);
}

int bk_writer_take_error(bk_writer *w)
{
    return read_error(w, 1);
}

void bk_writer_free(bk_writer *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);             /* it drains the queue first */
    pthread_cond_destroy(&w->progress);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
