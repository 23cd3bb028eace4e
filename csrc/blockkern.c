/*
 * blockkern.c: see blockkern.h for the contracts. C99 + POSIX + Linux
 * copy_file_range; libcrypto for SHA-256 (sha256_mb.c's multi-buffer path
 * first); pthreads for parallel hashing;
 * libxxhash for XXH3-128.
 */
#define _GNU_SOURCE 1 /* copy_file_range */

#include "blockkern.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include <xxhash.h>

/* ------------------------------------------------------------------ sha256 */

#define BK_MAX_THREADS 8
#define BK_PARALLEL_MIN_BYTES ((size_t)1 << 20)
#define BK_PARALLEL_MIN_BLOCKS 4

/* The digest is fetched once per process: OpenSSL 3 implicit fetches on
 * every init would dominate the cost for small blocks. */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static const EVP_MD *md_sha256;

static void md_init(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL); /* kept for life */
#endif
    if (md_sha256 == NULL)
        md_sha256 = EVP_sha256();
}

struct sha_job {
    const uint8_t *buf;   /* first byte of this job's first block */
    size_t len;           /* bytes covered by this job */
    size_t block_size;
    uint8_t *out;         /* this job's first digest */
    int rc;
};

/* Hashes the blocks of one job with one reused context: no allocation per
 * block. */
static void *sha_job_run(void *arg)
{
    struct sha_job *job = arg;
    EVP_MD_CTX *ctx;
    size_t off;

    job->rc = bk_sha256_mb(job->buf, job->len, job->block_size, job->out);
    if (job->rc != -ENOTSUP)
        return NULL;
    job->rc = 0;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        job->rc = -ENOMEM;
        return NULL;
    }
    for (off = 0; off < job->len; off += job->block_size) {
        size_t n = job->len - off < job->block_size ? job->len - off
                                                    : job->block_size;
        unsigned int dlen = 0;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
        int ok = EVP_DigestInit_ex2(ctx, md_sha256, NULL);
#else
        int ok = EVP_DigestInit_ex(ctx, md_sha256, NULL);
#endif
        ok = ok && EVP_DigestUpdate(ctx, job->buf + off, n);
        ok = ok && EVP_DigestFinal_ex(ctx, job->out, &dlen);
        if (!ok || dlen != BK_DIGEST_SIZE) {
            job->rc = -EIO;
            break;
        }
        job->out += BK_DIGEST_SIZE;
    }
    EVP_MD_CTX_free(ctx);
    return NULL;
}

static int auto_threads(size_t len, size_t nblocks)
{
    long cpus;

    if (len < BK_PARALLEL_MIN_BYTES || nblocks < BK_PARALLEL_MIN_BLOCKS)
        return 1;
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : (int)cpus;
}

int bk_sha256_many(const uint8_t *buf, size_t len, size_t block_size,
                   uint8_t *out, int nthreads)
{
    struct sha_job jobs[BK_MAX_THREADS];
    pthread_t tids[BK_MAX_THREADS];
    int started[BK_MAX_THREADS];
    size_t nblocks, per, first;
    int i, rc = 0;

    if (block_size == 0)
        return -EINVAL;
    if (len == 0)
        return 0;
    pthread_once(&md_once, md_init);

    nblocks = len / block_size + (len % block_size != 0);
    if (nthreads <= 0)
        nthreads = auto_threads(len, nblocks);
    if (nthreads > BK_MAX_THREADS)
        nthreads = BK_MAX_THREADS;
    if ((size_t)nthreads > nblocks)
        nthreads = (int)nblocks;

    /* Contiguous runs of whole blocks; job 0 runs on the calling thread. */
    per = nblocks / (size_t)nthreads;
    first = 0;
    for (i = 0; i < nthreads; i++) {
        size_t count = per + ((size_t)i < nblocks % (size_t)nthreads);
        size_t start = first * block_size;
        size_t end = (first + count) * block_size;
        jobs[i].buf = buf + start;
        jobs[i].len = (end > len ? len : end) - start;
        jobs[i].block_size = block_size;
        jobs[i].out = out + first * BK_DIGEST_SIZE;
        jobs[i].rc = 0;
        first += count;
    }
    for (i = 1; i < nthreads; i++)
        started[i] = pthread_create(&tids[i], NULL, sha_job_run, &jobs[i]) == 0;
    sha_job_run(&jobs[0]);
    for (i = 1; i < nthreads; i++) {
        if (started[i])
            pthread_join(tids[i], NULL);
        else
            sha_job_run(&jobs[i]); /* thread creation failed: do it here */
    }
    for (i = 0; i < nthreads; i++)
        if (jobs[i].rc != 0)
            rc = jobs[i].rc;
    return rc;
}

/* ---------------------------------------------------------------- xxh3-128 */

#if defined(__x86_64__) && defined(__GNUC__)
int bk_xxh128_many_avx2(const uint8_t *buf, size_t len, size_t block_size, uint8_t *out);
#endif

/* One thread on purpose: see blockkern.h (XXH3 is memory-bound here).
 * With AVX2, xxh_avx2.c's copy of this loop (the same digests, 3-4x faster). */
int bk_xxh128_many(const uint8_t *buf, size_t len, size_t block_size,
                   uint8_t *out)
{
    size_t off;

    if (block_size == 0)
        return -EINVAL;
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2"))
        return bk_xxh128_many_avx2(buf, len, block_size, out);
#endif
    for (off = 0; off < len; off += block_size) {
        size_t n = len - off < block_size ? len - off : block_size;
        XXH128_canonical_t c;

        XXH128_canonicalFromHash(&c, XXH3_128bits(buf + off, n));
        memcpy(out, c.digest, BK_XXH128_SIZE);
        out += BK_XXH128_SIZE;
    }
    return 0;
}

/* -------------------------------------------------------------- zero check */

/* Rejects non-zero data within the first 16 bytes (the common case for real
 * data), then ORs 256-byte strides, which GCC vectorises at -O3. */
static int is_zero(const uint8_t *p, size_t n)
{
    size_t i = 0;

    if (n >= 16) {
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        if (a | b)
            return 0;
        i = 16;
    }
    while (n - i >= 256) {
        uint64_t acc = 0;
        int k;
        for (k = 0; k < 32; k++) {
            uint64_t w;
            memcpy(&w, p + i + 8 * (size_t)k, 8);
            acc |= w;
        }
        if (acc)
            return 0;
        i += 256;
    }
    for (; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

size_t bk_zero_flags(const uint8_t *buf, size_t len, size_t block_size,
                     uint8_t *flags)
{
    size_t off, zeros = 0;

    if (block_size == 0)
        return 0;
    for (off = 0; off < len; off += block_size) {
        size_t n = len - off < block_size ? len - off : block_size;
        uint8_t z = (uint8_t)is_zero(buf + off, n);
        *flags++ = z;
        zeros += z;
    }
    return zeros;
}

/* -------------------------------------------------------------- copy range */

#define BK_COPY_CHUNK ((size_t)1 << 30)  /* per copy_file_range call */
#define BK_BOUNCE_SIZE ((size_t)1 << 20) /* pread/pwrite buffer */

static int64_t copy_bounce(int src_fd, off_t src_off, int dst_fd,
                           off_t dst_off, int64_t len)
{
    uint8_t *bounce;
    int64_t done = 0;

    bounce = malloc(BK_BOUNCE_SIZE);
    if (bounce == NULL)
        return -ENOMEM;
    while (done < len) {
        size_t want = (uint64_t)(len - done) < BK_BOUNCE_SIZE
                          ? (size_t)(len - done) : BK_BOUNCE_SIZE;
        ssize_t got = pread(src_fd, bounce, want, src_off + done);
        ssize_t put = 0;
        if (got < 0) {
            if (errno == EINTR)
                continue;
            done = -errno;
            break;
        }
        if (got == 0)
            break; /* src EOF */
        while (put < got) {
            ssize_t w = pwrite(dst_fd, bounce + put, (size_t)(got - put),
                               dst_off + done + put);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                if (w == 0)
                    errno = EIO; /* no progress: do not spin */
                put = -1;
                break;
            }
            put += w;
        }
        if (put < 0) {
            done = -errno;
            break;
        }
        done += got;
    }
    free(bounce);
    return done;
}

int64_t bk_copy_range(int src_fd, int64_t src_off, int dst_fd,
                      int64_t dst_off, int64_t len)
{
    off_t so = (off_t)src_off, dso = (off_t)dst_off;
    int64_t done = 0;

    if (src_fd < 0 || dst_fd < 0)
        return -EBADF;
    if (src_off < 0 || dst_off < 0 || len < 0)
        return -EINVAL;
    while (done < len) {
        size_t want = (uint64_t)(len - done) < BK_COPY_CHUNK
                          ? (size_t)(len - done) : BK_COPY_CHUNK;
        ssize_t n = copy_file_range(src_fd, &so, dst_fd, &dso, want, 0);
        if (n > 0) {
            done += n;
            continue;
        }
        if (n == 0)
            return done; /* src EOF */
        switch (errno) {
        case EINTR:
            continue;
        case EXDEV:
        case ENOSYS:
        case EOPNOTSUPP:
        case EINVAL: {
            int64_t rest = copy_bounce(src_fd, so, dst_fd, dso, len - done);
            return rest < 0 ? rest : done + rest;
        }
        default:
            return -errno;
        }
    }
    return done;
}


int bk_start_writeback(int fd, int64_t off, int64_t len)
{
#ifdef SYNC_FILE_RANGE_WRITE
    if (sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE) != 0)
        return -errno;
    return 0;
#else
    (void)fd; (void)off; (void)len;
    return -ENOSYS;
#endif
}
