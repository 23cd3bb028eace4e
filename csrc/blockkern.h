/*
 * blockkern: the native kernels under blockstore (layer 1, see docs/ARCHITECTURE.md §2.1).
 *
 * C99, no Python.h. Loaded only by blockstore/native/__init__.py through cffi
 * in out-of-line API mode, which releases the GIL around every call: these
 * functions must not touch Python state and are safe to call concurrently
 * from several threads on disjoint output buffers.
 *
 * "Blocks" of a buffer: consecutive slices of block_size bytes; the last
 * one may be shorter. A buffer of len bytes has ceil(len / block_size)
 * blocks, so an empty buffer has none.
 */
#ifndef BLOCKKERN_H
#define BLOCKKERN_H

#include <stddef.h>
#include <stdint.h>

#define BK_DIGEST_SIZE 32
#define BK_XXH128_SIZE 16

/*
 * SHA-256 of every block of buf into out (n * 32 bytes, n = block count).
 * The last, possibly short block is hashed as is (no padding).
 *
 * nthreads: 1 = calling thread only; 0 = automatic (several threads, up to
 * the online CPU count, only when len >= 1 MiB and there are >= 4 blocks);
 * n > 1 = at most n threads (still only as many as there are blocks).
 * Each thread hashes through bk_sha256_mb where it can (blocks of at most
 * 32 KiB, the multi-buffer library built in and running on this CPU), else
 * through OpenSSL libcrypto one block at a time.
 * Cost per core on 4 KiB blocks: ~0.3 s/GiB multi-buffer with AVX-512,
 * ~0.8 s/GiB libcrypto with SHA-NI; plus ~30 us per extra thread started.
 *
 * Returns 0, or a negative errno: -EINVAL (block_size == 0), -ENOMEM,
 * -EIO (hashing library failure). out is unspecified on error.
 */
int bk_sha256_many(const uint8_t *buf, size_t len, size_t block_size,
                   uint8_t *out, int nthreads);

/*
 * bk_sha256_many's multi-buffer path (sha256_mb.c), calling thread only:
 * several blocks hashed side by side by Intel's libIPSec_MB. Same digests.
 * Returns 0, -EINVAL (block_size == 0), -ENOTSUP (not built with the
 * library, the CPU lacks what it needs, or blocks over 32 KiB: use
 * libcrypto), or -EIO (a job failed).
 */
int bk_sha256_mb(const uint8_t *buf, size_t len, size_t block_size,
                 uint8_t *out);

/* Which library hashes SHA-256 of blocks up to 32 KiB: "ipsec-mb" or "libcrypto". */
const char *bk_sha256_impl(void);

/*
 * XXH3-128 (xxHash 0.8, seed 0) of every block of buf into out (n * 16 bytes,
 * n = block count), each digest in xxHash's canonical big-endian form
 * (XXH128_canonicalFromHash: high 64 bits first). The last, possibly short
 * block is hashed as is, as in bk_sha256_many. Not cryptographic: for scrub
 * checksums only, never for dedup.
 *
 * Calling thread only: XXH3 runs at > 10 GB/s per core (memory bandwidth),
 * so extra threads would cost more to start than they save.
 *
 * Returns 0, or -EINVAL (block_size == 0). An empty buffer writes nothing.
 */
int bk_xxh128_many(const uint8_t *buf, size_t len, size_t block_size,
                   uint8_t *out);

/*
 * flags[i] = 1 if block i is all zero bytes, else 0 (n bytes written).
 * Returns the number of zero blocks; block_size == 0 writes nothing and
 * returns 0. Cost: memory bandwidth on zero blocks; non-zero blocks are
 * usually rejected within their first bytes.
 */
size_t bk_zero_flags(const uint8_t *buf, size_t len, size_t block_size,
                     uint8_t *flags);

/*
 * Copy len bytes from src_fd at src_off to dst_fd at dst_off; file offsets
 * of both fds are left unchanged. Uses copy_file_range (reflinks or in-kernel
 * copy) and falls back to pread/pwrite through a 1 MiB buffer on EXDEV,
 * ENOSYS, EOPNOTSUPP or EINVAL. Restarts on EINTR.
 *
 * Returns the bytes copied, short only when src ends first, or a negative
 * errno (-EINVAL for negative arguments). Bytes copied before an error are
 * not reported. Overlapping ranges within one file are not supported.
 */
int64_t bk_copy_range(int src_fd, int64_t src_off, int dst_fd,
                      int64_t dst_off, int64_t len);

/* Start writing back the dirty page-cache pages of [off, off+len) of fd
 * without waiting (sync_file_range SYNC_FILE_RANGE_WRITE): a later
 * fdatasync then finds most of the data already on its way to the disk.
 * A hint only: no durability promise. Returns 0 or -errno (-ENOSYS where
 * the call does not exist). Never blocks on the I/O itself. */
int bk_start_writeback(int fd, int64_t off, int64_t len);

/*
 * Background writer (bkwriter.c): pwrite jobs run in submission order on
 * one POSIX thread of its own that never touches Python, so a Python
 * caller hands a data write off without a GIL hand-over.
 *
 * bk_writer_new(fd, signal_bytes, hint_bytes): starts the thread; NULL on
 * failure (errno set). An idle worker is woken once signal_bytes have been
 * queued (one wake-up per group of writes) or when somebody waits.
 * hint_bytes > 0: after writing, contiguous written ranges are gathered and
 * handed to bk_start_writeback every hint_bytes; 0: no hints.
 *
 * bk_writer_submit: queue a write of buf[0..len) at off; returns its ticket
 * (1, 2, ...), -ENOMEM, or -EINVAL (algo without block_size or out). With
 * algo BK_HASH_XXH128 / BK_HASH_SHA256 the worker first puts the digests of
 * buf's blocks into out (as bk_xxh128_many / bk_sha256_many on one thread).
 * The caller keeps buf and out alive, and buf unchanged, until a wait for
 * that ticket (or a later one) has returned; out is valid from then on,
 * unless the job failed. The worker runs as SCHED_IDLE (only idle CPU time)
 * while nobody waits for it; bk_writer_wait raises it to SCHED_OTHER until
 * its queue is empty (see bkwriter.c, "Priority").
 * bk_writer_done: the highest ticket up to which every job has finished.
 * bk_writer_wait: returns once every job up to ticket has finished.
 * bk_writer_error / bk_writer_take_error: the errno of the first failed job
 * since the last take (0: none); take also clears it. A failed job's bytes
 * may be partly written.
 * bk_writer_free: finishes every queued job, stops the thread, frees.
 *
 * Thread safety: every call may come from any thread; fd must stay open
 * until bk_writer_free returns.
 */
typedef struct bk_writer bk_writer;

#define BK_HASH_NONE 0
#define BK_HASH_XXH128 1
#define BK_HASH_SHA256 2

bk_writer *bk_writer_new(int fd, size_t signal_bytes, int64_t hint_bytes);
int64_t bk_writer_submit(bk_writer *w, int64_t off, const uint8_t *buf, size_t len,
                         int algo, size_t block_size, uint8_t *out);
int64_t bk_writer_done(bk_writer *w);
void bk_writer_wait(bk_writer *w, int64_t ticket);
int bk_writer_error(bk_writer *w);
int bk_writer_take_error(bk_writer *w);
void bk_writer_free(bk_writer *w);

#endif /* BLOCKKERN_H */
