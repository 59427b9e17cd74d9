// An LZ77-style compressor: a hash table of 3-byte prefixes with chains
// (depth 16, 64 KiB window) over 16 MiB of generated text (words drawn by
// a PRNG from a small vocabulary), greedy matching, tokens packed as bits.
// Decompresses the token stream again and checks it round-trips; prints
// the compressed size and a checksum. A WASI command for
// benches/programs.rs.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_SIZE (16 * 1024 * 1024)
#define WINDOW (64 * 1024)
#define HASH_BITS 15
#define CHAIN_DEPTH 16
#define MIN_MATCH 3
#define MAX_MATCH 258

#include "phase_end.h"

static const char *words[] = {
    "the", "of", "and", "a", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on",
    "are", "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had",
    "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said",
    "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up",
    "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would",
    "make", "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see",
    "number", "no", "way", "could", "people", "my", "than", "first", "water", "been", "call",
    "who", "oil", "its", "now", "find", "long", "down", "day", "did", "get", "come", "made",
    "may", "part", "backstop", "runtime", "compiler", "assembly", "destructor", "unwind",
};

// Bit writer.
typedef struct { uint8_t *out; size_t pos; uint64_t acc; int n; } bits;
static void put(bits *b, uint32_t v, int n) {
    b->acc |= (uint64_t)v << b->n;
    b->n += n;
    while (b->n >= 8) { b->out[b->pos++] = (uint8_t)b->acc; b->acc >>= 8; b->n -= 8; }
}
static void flush(bits *b) { if (b->n) put(b, 0, 8 - b->n); }

// Bit reader.
typedef struct { const uint8_t *in; size_t pos; uint64_t acc; int n; } reader;
static uint32_t get(reader *r, int n) {
    while (r->n < n) { r->acc |= (uint64_t)r->in[r->pos++] << r->n; r->n += 8; }
    uint32_t v = (uint32_t)(r->acc & ((1ull << n) - 1));
    r->acc >>= n;
    r->n -= n;
    return v;
}

static uint32_t hash3(const uint8_t *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
    return (v * 2654435761u) >> (32 - HASH_BITS);
}

int main(void) {
    uint8_t *text = malloc(TEXT_SIZE);
    uint8_t *packed = malloc(TEXT_SIZE * 2);
    uint8_t *back = malloc(TEXT_SIZE);
    int32_t *head = malloc((1 << HASH_BITS) * sizeof *head);
    int32_t *prev = malloc(WINDOW * sizeof *prev);
    if (!text || !packed || !back || !head || !prev) return 1;

    // Generate the text.
    uint32_t x = 12345;
    const int nwords = sizeof words / sizeof *words;
    size_t len = 0;
    while (len < TEXT_SIZE) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        // Skewed choice: small indices are more common.
        uint32_t r = x % (uint32_t)(nwords * nwords);
        const char *w = words[(uint32_t)(r / nwords) * (r % nwords) / nwords];
        for (const char *c = w; *c && len < TEXT_SIZE; c++) text[len++] = (uint8_t)*c;
        if (len < TEXT_SIZE) text[len++] = (x >> 27) == 0 ? '\n' : ' ';
    }

    PHASE_END(1, text[len - 1]);  // text generated

    // Compress. Token: 0 + 8-bit literal, or 1 + 16-bit distance-1 +
    // 8-bit length-MIN_MATCH.
    for (int i = 0; i < (1 << HASH_BITS); i++) head[i] = -1;
    bits b = {packed, 0, 0, 0};
    size_t i = 0;
    uint64_t matches = 0, literals = 0;
    while (i < TEXT_SIZE) {
        int best_len = 0;
        int32_t best_dist = 0;
        if (i + MIN_MATCH <= TEXT_SIZE) {
            uint32_t h = hash3(text + i);
            int32_t cand = head[h];
            size_t max = TEXT_SIZE - i < MAX_MATCH ? TEXT_SIZE - i : MAX_MATCH;
            for (int depth = 0; depth < CHAIN_DEPTH && cand >= 0 && i - cand <= WINDOW; depth++) {
                const uint8_t *p = text + cand, *q = text + i;
                if (p[best_len] == q[best_len]) {
                    size_t l = 0;
                    while (l < max && p[l] == q[l]) l++;
                    if ((int)l > best_len) { best_len = (int)l; best_dist = (int32_t)(i - cand); }
                    if (l == max) break;
                }
                cand = prev[cand % WINDOW];
            }
            prev[i % WINDOW] = head[h];
            head[h] = (int32_t)i;
        }
        if (best_len >= MIN_MATCH) {
            put(&b, 1, 1);
            put(&b, (uint32_t)(best_dist - 1), 16);
            put(&b, (uint32_t)(best_len - MIN_MATCH), 8);
            // Insert the skipped positions into the hash chains.
            for (size_t k = i + 1; k < i + (size_t)best_len && k + MIN_MATCH <= TEXT_SIZE; k++) {
                uint32_t h = hash3(text + k);
                prev[k % WINDOW] = head[h];
                head[h] = (int32_t)k;
            }
            i += (size_t)best_len;
            matches++;
        } else {
            put(&b, 0, 1);
            put(&b, text[i], 8);
            i++;
            literals++;
        }
    }
    flush(&b);
    PHASE_END(2, b.pos);  // compressed

    // Decompress and compare.
    reader r = {packed, 0, 0, 0};
    size_t o = 0;
    while (o < TEXT_SIZE) {
        if (get(&r, 1)) {
            uint32_t dist = get(&r, 16) + 1;
            uint32_t l = get(&r, 8) + MIN_MATCH;
            for (uint32_t k = 0; k < l; k++, o++) back[o] = back[o - dist];
        } else {
            back[o++] = (uint8_t)get(&r, 8);
        }
    }
    PHASE_END(3, back[7]);  // decompressed
    PHASE_END(4, memcmp(back, text, TEXT_SIZE));  // compared (again below)
    if (memcmp(back, text, TEXT_SIZE) != 0) { printf("round trip failed\n"); return 1; }

    uint32_t sum = 0;
    for (size_t k = 0; k < b.pos; k++) sum = sum * 16777619u ^ packed[k];
    printf("lz77 %d bytes -> %zu bytes, %llu matches, %llu literals, checksum %08x\n",
           TEXT_SIZE, b.pos, (unsigned long long)matches, (unsigned long long)literals, sum);
    return 0;
}
