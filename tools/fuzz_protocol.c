/*
 * Fuzz driver for firmware_templates/common/protocol.c; built and run by tools/fuzz_protocol.py with
 * -fsanitize=address,undefined (every buffer the device gets is malloc'ed at its exact size, so a
 * one-byte overrun is caught).
 *
 *   protocol_fuzz SEED FRAMES      random and mutated frames, device re-configured at random
 *
 * Invariants checked (abort on violation): the device never crashes or overruns; everything it writes
 * decodes as well-formed reply frames no longer than its max payload; an INVOKE retry never runs the
 * model twice; encode -> decode is the identity; decoding arbitrary bytes never overruns its buffer.
 * With clang, -DOFA_LIBFUZZER -fsanitize=fuzzer,address builds a libFuzzer target from the same code.
 */
#include "protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 1;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

#define FAIL(...) do { fprintf(stderr, "FUZZ INVARIANT: " __VA_ARGS__); fprintf(stderr, "\n"); abort(); } while (0)

typedef struct {
    proto_device dev;
    proto_device_config cfg;
    proto_device_info info;
    uint8_t *out_stream; size_t out_len, out_cap;
    size_t invokes, profiles, replies, report_too_large;
    int set_input_cb;
    uint8_t *shadow_input; /* where set_input stores chunks when the callback is used */
} fuzz_dev;

static fuzz_dev D;

static int f_write(void *user, const uint8_t *p, size_t n) {
    fuzz_dev *d = (fuzz_dev *)user;
    if (d->out_len + n > d->out_cap) {
        d->out_cap = (d->out_len + n) * 2;
        d->out_stream = (uint8_t *)realloc(d->out_stream, d->out_cap);
        if (!d->out_stream) abort();
    }
    memcpy(d->out_stream + d->out_len, p, n);
    d->out_len += n;
    return below(50) == 0; /* now and then the UART "fails": must be harmless */
}

static int f_set_input(void *user, uint32_t offset, const uint8_t *data, size_t len) {
    fuzz_dev *d = (fuzz_dev *)user;
    if ((size_t)offset + len > d->info.input_bytes) FAIL("set_input past the input: %u+%zu", offset, len);
    if (len) memcpy(d->shadow_input + offset, data, len);
    return below(40) == 0 ? PROTO_E_BAD_OFFSET : 0;
}

static int f_invoke(void *user, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, size_t *out_len,
                    uint64_t *cycles) {
    fuzz_dev *d = (fuzz_dev *)user;
    size_t i, n = d->info.output_bytes;
    uint8_t acc = 0;
    if (in) for (i = 0; i < in_len; i++) acc ^= in[i]; /* reads the whole input: ASan checks its size */
    if (n > cap) FAIL("output cap %zu below output_bytes %zu", cap, n);
    for (i = 0; i < n; i++) out[i] = (uint8_t)(acc + i);
    *out_len = d->report_too_large ? cap + 1 : n;
    *cycles = rnd();
    d->invokes++;
    return below(30) == 0 ? 3 : 0;
}

static int f_profile(void *user, proto_op_cycles *ops, size_t cap, size_t *n_ops) {
    fuzz_dev *d = (fuzz_dev *)user;
    size_t i, n = below(cap + 1);
    for (i = 0; i < n; i++) { ops[i].op_code = (uint16_t)rnd(); ops[i].cycles = rnd(); }
    *n_ops = below(20) == 0 ? cap + 1 : n;
    d->profiles++;
    return below(30) == 0 ? 4 : 0;
}

static void free_dev(void) {
    free(D.cfg.rx_buf); free(D.cfg.tx_buf); free(D.cfg.input_buf); free(D.cfg.output_buf); free(D.cfg.prof_buf);
    free(D.shadow_input);
}

static void setup_dev(void) {
    size_t max_pl = PROTO_MIN_MAX_PAYLOAD + below(900);
    free_dev();
    memset(&D.info, 0, sizeof D.info);
    D.info.board_id = below(2) ? "fuzz-board-with-a-very-long-identifier-beyond-32-bytes" : "fz";
    D.info.firmware_version = below(4) ? "fuzz 1" : NULL;
    D.info.input_bytes = (uint32_t)below(2000);
    D.info.output_bytes = (uint32_t)below(1500);
    D.info.window = (uint8_t)below(9);
    D.info.input_rank = 4;
    D.report_too_large = below(25) == 0;
    D.set_input_cb = below(4) == 0;
    memset(&D.cfg, 0, sizeof D.cfg);
    D.cfg.info = &D.info; D.cfg.user = &D; D.cfg.write = f_write; D.cfg.invoke = f_invoke;
    D.cfg.rx_cap = PROTO_RX_BUF_SIZE(max_pl) - below(3); /* a cap between two payload sizes */
    if (D.cfg.rx_cap < PROTO_RX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD)) D.cfg.rx_cap = PROTO_RX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD);
    D.cfg.tx_cap = PROTO_TX_BUF_SIZE(max_pl + below(300));
    D.cfg.rx_buf = (uint8_t *)malloc(D.cfg.rx_cap);
    D.cfg.tx_buf = (uint8_t *)malloc(D.cfg.tx_cap);
    D.shadow_input = (uint8_t *)malloc(D.info.input_bytes + 1);
    if (D.set_input_cb) {
        D.cfg.set_input = f_set_input;
    } else {
        D.cfg.input_cap = D.info.input_bytes;
        D.cfg.input_buf = (uint8_t *)malloc(D.cfg.input_cap + (D.cfg.input_cap == 0));
    }
    D.cfg.output_cap = D.info.output_bytes;
    D.cfg.output_buf = (uint8_t *)malloc(D.cfg.output_cap + (D.cfg.output_cap == 0));
    if (below(3)) {
        D.cfg.prof_cap = 1 + below(300);
        D.cfg.prof_buf = (proto_op_cycles *)malloc(D.cfg.prof_cap * sizeof(proto_op_cycles));
        D.cfg.profile = f_profile;
    }
    if (!D.cfg.rx_buf || !D.cfg.tx_buf || !D.cfg.output_buf || !D.shadow_input) abort();
    D.out_len = 0;
    if (proto_device_init(&D.dev, &D.cfg) != PROTO_OK) FAIL("init refused a valid config");
}

/* Every block the device wrote must decode as a reply no longer than its max payload. */
static void check_output(void) {
    size_t i, start = 0;
    for (i = 0; i < D.out_len; i++) {
        uint8_t t, s;
        const uint8_t *p;
        size_t len;
        int rc;
        if (D.out_stream[i] != 0) continue;
        rc = proto_frame_decode(D.out_stream + start, i - start, &t, &s, &p, &len);
        if (rc != PROTO_OK) FAIL("device wrote an undecodable frame (%d)", rc);
        if (!(t & 0x80u)) FAIL("device wrote a request type 0x%02x", t);
        if (len > D.dev.max_payload) FAIL("reply of %zu bytes exceeds max payload %zu", len, D.dev.max_payload);
        D.replies++;
        start = i + 1;
    }
    if (start != D.out_len) FAIL("device wrote a frame without its delimiter");
    D.out_len = 0;
}

static void mutate(uint8_t *b, size_t *n, size_t cap) {
    size_t k, m = 1 + below(4);
    for (k = 0; k < m; k++) {
        size_t pos = below(*n + 1);
        switch (below(6)) {
        case 0: if (*n) b[below(*n)] ^= (uint8_t)(1u << below(8)); break;            /* bit flip */
        case 1: if (*n) b[below(*n)] = (uint8_t)rnd(); break;                          /* byte */
        case 2: if (*n < cap) { memmove(b + pos + 1, b + pos, *n - pos); b[pos] = (uint8_t)rnd(); (*n)++; } break;
        case 3: if (*n && pos < *n) { memmove(b + pos, b + pos + 1, *n - pos - 1); (*n)--; } break;
        case 4: *n = below(*n + 1); break;                                             /* truncate */
        default: if (*n < cap) { memmove(b + pos + 1, b + pos, *n - pos); b[pos] = 0; (*n)++; } break;
        }
    }
}

/* One fuzz "frame": returns the bytes to feed in buf. */
static size_t make_frame(uint8_t *buf, size_t cap, int *valid, uint8_t *type_out, uint8_t *seq_out) {
    static uint8_t payload[2048];
    static uint8_t last_seq;
    size_t len = 0, n;
    uint8_t type, seq;
    *valid = 0;
    if (below(10) == 0) { /* raw noise */
        n = below(700);
        for (len = 0; len < n; len++) buf[len] = below(8) ? (uint8_t)rnd() : 0;
        return n;
    }
    switch (below(7)) {
    case 0: type = PROTO_T_HELLO; break;
    case 1: case 2: type = PROTO_T_SET_INPUT; break;
    case 3: type = PROTO_T_INVOKE; break;
    case 4: type = PROTO_T_READ_OUTPUT; break;
    case 5: type = PROTO_T_PROFILE; break;
    default: type = (uint8_t)rnd(); break;
    }
    seq = below(3) == 0 ? last_seq : (uint8_t)rnd(); /* repeats exercise the retry cache */
    last_seq = seq;
    if (type == PROTO_T_SET_INPUT) {
        uint32_t off = below(4) ? (uint32_t)below(D.info.input_bytes + 2) : (uint32_t)rnd();
        len = 4 + below(D.dev.max_payload + 8 - 4);
        payload[0] = (uint8_t)off; payload[1] = (uint8_t)(off >> 8); payload[2] = (uint8_t)(off >> 16);
        payload[3] = (uint8_t)(off >> 24);
        for (n = 4; n < len; n++) payload[n] = (uint8_t)rnd();
    } else if (type == PROTO_T_READ_OUTPUT || type == PROTO_T_PROFILE) {
        len = below(6) ? (type == PROTO_T_PROFILE ? 2 : 4) : below(8);
        for (n = 0; n < len; n++) payload[n] = below(2) ? (uint8_t)below(4) : (uint8_t)rnd();
    } else {
        len = below(8) ? 0 : below(300);
        for (n = 0; n < len; n++) payload[n] = (uint8_t)rnd();
    }
    n = proto_frame_encode(type, seq, payload, len, buf, cap);
    if (n == 0) FAIL("encode refused a %zu-byte payload with a big enough buffer", len);
    { /* round trip through a buffer of the exact size */
        uint8_t *copy = (uint8_t *)malloc(n - 1 + 1), t, s;
        const uint8_t *p;
        size_t plen;
        memcpy(copy, buf, n - 1);
        if (proto_frame_decode(copy, n - 1, &t, &s, &p, &plen) != PROTO_OK || t != type || s != seq ||
            plen != len || (len && memcmp(p, payload, len) != 0))
            FAIL("encode/decode round trip differs");
        free(copy);
    }
    *valid = 1;
    *type_out = type;
    *seq_out = seq;
    if (below(3) == 0) { mutate(buf, &n, cap); *valid = 0; }
    if (below(10) == 0) { buf[n++] = 0; } /* a stray delimiter: an empty frame */
    return n;
}

/* Decode arbitrary bytes with exact-size buffers: nothing may read or write outside them. */
static void fuzz_decoders(const uint8_t *b, size_t n) {
    size_t cap = below(n + 2);
    uint8_t *src = (uint8_t *)malloc(n + (n == 0)), *dst = (uint8_t *)malloc(cap + (cap == 0));
    uint8_t t, s;
    const uint8_t *p;
    size_t len;
    long r;
    if (!src || !dst) abort();
    if (n) memcpy(src, b, n);
    r = proto_cobs_decode(src, n, dst, cap);
    if (r > (long)cap) FAIL("cobs_decode returned %ld > cap %zu", r, cap);
    (void)proto_frame_decode(src, n, &t, &s, &p, &len);
    free(src);
    free(dst);
}

#ifdef OFA_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready = 0;
    if (!ready) { setup_dev(); ready = 1; }
    rng_state = 0x9E3779B97F4A7C15ull ^ size;
    proto_device_feed(&D.dev, data, size);
    check_output();
    fuzz_decoders(data, size);
    return 0;
}
#else
int main(int argc, char **argv) {
    unsigned long long seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
    unsigned long long frames = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000, i, bytes = 0, valid_frames = 0;
    static uint8_t buf[PROTO_ENCODED_SIZE(4096)];
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    setup_dev();
    for (i = 0; i < frames; i++) {
        int valid;
        uint8_t type = 0, seq = 0;
        size_t n, fed = 0;
        size_t invokes_before = D.invokes;
        if (below(2000) == 0) setup_dev(); /* a new firmware configuration */
        if (below(500) == 0) { D.out_len = 0; proto_device_init(&D.dev, &D.cfg); } /* a reset */
        n = make_frame(buf, sizeof buf, &valid, &type, &seq);
        fuzz_decoders(buf, n ? n - 1 : 0);
        if (valid && below(2) == 0) { uint8_t z = 0; proto_device_feed(&D.dev, &z, 1); } /* host's flush */
        while (fed < n) { /* arbitrary splits, like UART reads */
            size_t k = 1 + below(n - fed);
            proto_device_feed(&D.dev, buf + fed, k);
            fed += k;
        }
        bytes += n;
        valid_frames += (unsigned long long)valid;
        if (valid && type == PROTO_T_INVOKE && D.dev.have_last && D.dev.last_type == PROTO_T_INVOKE &&
            D.dev.last_seq == seq && D.invokes > invokes_before) {
            /* it ran and its RESULT is cached: a retry must be answered without running the model again */
            size_t after = D.invokes;
            proto_device_feed(&D.dev, buf, n);
            if (D.invokes > after) FAIL("a retried INVOKE (seq %u) ran the model again", seq);
        }
        if (n && buf[n - 1] == 0) check_output();
    }
    { uint8_t z = 0; proto_device_feed(&D.dev, &z, 1); check_output(); }
    printf("{\"seed\": %llu, \"frames\": %llu, \"valid_frames\": %llu, \"bytes\": %llu, \"replies\": %zu, "
           "\"invokes\": %zu, \"profiles\": %zu}\n", seed, frames, valid_frames, bytes, D.replies, D.invokes,
           D.profiles);
    free_dev();
    free(D.out_stream);
    return 0;
}
#endif
