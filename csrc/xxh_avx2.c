/*
 * xxh_avx2.c: XXH3-128 of many blocks with xxHash's AVX2 kernel, compiled
 * here from the library's header (XXH_INLINE_ALL) for this one function.
 * Why: a distribution's libxxhash is built for the baseline x86-64 (SSE2,
 * about 6 GB/s per core); the AVX2 kernel hashes the same bytes to the
 * same digests 3-4 times faster, and a FUSE daemon hashes every byte it
 * stores. blockkern.c calls it only when the CPU has AVX2
 * (bk_xxh128_many); nothing else in the extension is built for AVX2.
 */
#include "blockkern.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#define XXH_NAMESPACE bk_avx2_
#define XXH_VECTOR 2 /* XXH_AVX2 */
#include <xxhash.h>

int bk_xxh128_many_avx2(const uint8_t *buf, size_t len, size_t block_size, uint8_t *out)
{
    size_t off;

    for (off = 0; off < len; off += block_size) {
        size_t n = len - off < block_size ? len - off : block_size;
        XXH128_canonical_t c;

        XXH128_canonicalFromHash(&c, XXH3_128bits(buf + off, n));
        memcpy(out, c.digest, BK_XXH128_SIZE);
        out += BK_XXH128_SIZE;
    }
    return 0;
}
#pragma GCC pop_options
#endif
