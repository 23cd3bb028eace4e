/*
 * sha256_mb.c: SHA-256 of many blocks on the calling thread, several at once,
 * through Intel's multi-buffer crypto library (libIPSec_MB, Debian
 * libipsec-mb-dev). With AVX-512 it hashes 16 blocks side by side, about 2.5x
 * the throughput of OpenSSL's one-block-at-a-time SHA-NI code on 4 KiB
 * blocks. The digests are plain SHA-256, the same as libcrypto's.
 *
 * Built only when the library's header was found (BK_HAVE_IPSEC_MB, set by
 * blockstore/native/build.py); otherwise, or when the library does not run
 * on this CPU, bk_sha256_mb returns -ENOTSUP and blockkern.c uses libcrypto.
 */
#define _GNU_SOURCE 1

#include "blockkern.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifdef BK_HAVE_IPSEC_MB

#include <pthread.h>
#include <intel-ipsec-mb.h>

/* Longest message hashed here: the library refused plain-SHA messages of
 * 65535 bytes and more (32 KiB passed); larger blocks go to libcrypto. */
#define BK_MB_MAX_LEN ((size_t)32768)

/* Managers are not thread-safe and cost ~200 KB and ~70 us to set up, so a
 * call takes one from a small shared pool and gives it back: bk_sha256_many's
 * helper threads live for one call each and must not pay the set-up every
 * time.  At most BK_MB_POOL are kept; more at once are made and freed. */
#define BK_MB_POOL 16

static pthread_once_t mb_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mb_lock = PTHREAD_MUTEX_INITIALIZER;
static IMB_MGR *mb_free_list[BK_MB_POOL];
static int mb_nfree;
static int mb_usable; /* a manager initialises on this CPU */

static IMB_MGR *mb_new(void)
{
    IMB_MGR *mgr = alloc_mb_mgr(0);
    IMB_ARCH arch = IMB_ARCH_NONE;

    if (mgr == NULL)
        return NULL;
    init_mb_mgr_auto(mgr, &arch);
    if (imb_get_errno(mgr) != 0 || arch == IMB_ARCH_NONE || arch == IMB_ARCH_NOAESNI) {
        free_mb_mgr(mgr);
        return NULL;
    }
    return mgr;
}

/* A fork while another thread holds mb_lock would leave the child's copy
 * locked for good: the lock is taken around fork and released on both sides
 * (the processes that serve mounts are forked from a threaded server). */
static void mb_fork_prepare(void)
{
    pthread_mutex_lock(&mb_lock);
}

static void mb_fork_done(void)
{
    pthread_mutex_unlock(&mb_lock);
}

static void mb_init(void)
{
    IMB_MGR *probe;

    if (pthread_atfork(mb_fork_prepare, mb_fork_done, mb_fork_done) != 0)
        return;
    probe = mb_new();
    if (probe == NULL)
        return;
    mb_usable = 1;
    mb_free_list[mb_nfree++] = probe;
}

static IMB_MGR *mb_acquire(void)
{
    IMB_MGR *mgr = NULL;

    pthread_once(&mb_once, mb_init);
    if (!mb_usable)
        return NULL;
    pthread_mutex_lock(&mb_lock);
    if (mb_nfree > 0)
        mgr = mb_free_list[--mb_nfree];
    pthread_mutex_unlock(&mb_lock);
    return mgr != NULL ? mgr : mb_new();
}

static void mb_release(IMB_MGR *mgr)
{
    pthread_mutex_lock(&mb_lock);
    if (mb_nfree < BK_MB_POOL) {
        mb_free_list[mb_nfree++] = mgr;
        mgr = NULL;
    }
    pthread_mutex_unlock(&mb_lock);
    if (mgr != NULL)
        free_mb_mgr(mgr);
}

static int mb_done(IMB_JOB *job, int rc)
{
    return (job->status == IMB_STATUS_COMPLETED) ? rc : -EIO;
}

int bk_sha256_mb(const uint8_t *buf, size_t len, size_t block_size, uint8_t *out)
{
    IMB_MGR *mgr;
    IMB_JOB *job;
    size_t off;
    int rc = 0;

    if (block_size == 0)
        return -EINVAL;
    if (block_size > BK_MB_MAX_LEN || (mgr = mb_acquire()) == NULL)
        return -ENOTSUP;
    for (off = 0; off < len; off += block_size, out += BK_DIGEST_SIZE) {
        job = IMB_GET_NEXT_JOB(mgr);
        job->cipher_mode = IMB_CIPHER_NULL;
        job->cipher_direction = IMB_DIR_ENCRYPT;
        job->chain_order = IMB_ORDER_HASH_CIPHER;
        job->hash_alg = IMB_AUTH_SHA_256;
        job->src = buf + off;
        job->dst = NULL;
        job->cipher_start_src_offset_in_bytes = 0;
        job->msg_len_to_cipher_in_bytes = 0;
        job->hash_start_src_offset_in_bytes = 0;
        job->msg_len_to_hash_in_bytes = len - off < block_size ? len - off : block_size;
        job->auth_tag_output = out;
        job->auth_tag_output_len_in_bytes = BK_DIGEST_SIZE;
        /* jobs complete in submission order; each digest lands in its own slot */
        for (job = IMB_SUBMIT_JOB(mgr); job != NULL; job = IMB_GET_COMPLETED_JOB(mgr))
            rc = mb_done(job, rc);
    }
    /* always drained, also after a failure: the manager is reused */
    while ((job = IMB_FLUSH_JOB(mgr)) != NULL)
        rc = mb_done(job, rc);
    mb_release(mgr);
    return rc;
}

const char *bk_sha256_impl(void)
{
    IMB_MGR *mgr = mb_acquire();

    if (mgr == NULL)
        return "libcrypto";
    mb_release(mgr);
    return "ipsec-mb";
}

#else /* !BK_HAVE_IPSEC_MB */

int bk_sha256_mb(const uint8_t *buf, size_t len, size_t block_size, uint8_t *out)
{
    (void)buf;
    (void)len;
    (void)out;
    return block_size == 0 ? -EINVAL : -ENOTSUP;
}

const char *bk_sha256_impl(void)
{
    return "libcrypto";
}

#endif
