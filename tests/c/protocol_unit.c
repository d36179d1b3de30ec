/*
 * Unit tests of firmware_templates/common/protocol.c, built by tests/test_protocol_c.py with
 * -std=c99 -Wall -Wextra -Werror -fsanitize=address,undefined. Exit status 0 = all passed.
 */
#include "protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, checks = 0;
#define CHECK(cond)                                                                  \
    do {                                                                             \
        checks++;                                                                    \
        if (!(cond)) {                                                               \
            failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* ------------------------------------------------------------------ a test device */

#define OUT_BYTES 600 /* larger than one RESULT page: exercises READ_OUTPUT */
#define MAX_OPS 60    /* more than one PROFILE page */

typedef struct {
    uint8_t wire[1 << 16];  /* everything the device wrote */
    size_t wire_len;
    int invokes, profiles;
    size_t out_len;
    size_t n_ops;
} harness;

static int h_write(void *user, const uint8_t *p, size_t n) {
    harness *h = (harness *)user;
    if (h->wire_len + n > sizeof h->wire) return 1;
    memcpy(h->wire + h->wire_len, p, n);
    h->wire_len += n;
    return 0;
}

static int h_invoke(void *user, const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, size_t *out_len,
                    uint64_t *cycles) {
    harness *h = (harness *)user;
    size_t i;
    uint32_t sum = 0;
    for (i = 0; i < in_len; i++) sum += in[i];
    if (h->out_len > cap) return 77;
    for (i = 0; i < h->out_len; i++) out[i] = (uint8_t)(sum + i);
    *out_len = h->out_len;
    *cycles = 0x100000000ull + sum; /* > 32 bits on purpose */
    h->invokes++;
    return 0;
}

static int h_profile(void *user, proto_op_cycles *ops, size_t cap, size_t *n) {
    harness *h = (harness *)user;
    size_t i;
    if (h->n_ops > cap) return 5;
    for (i = 0; i < h->n_ops; i++) { ops[i].op_code = (uint16_t)(i % 7); ops[i].cycles = 1000u * (i + 1); }
    *n = h->n_ops;
    h->profiles++;
    return 0;
}

/* Split h->wire into decoded frames; return how many, fill the arrays. Damaged frames count as type 0. */
typedef struct { uint8_t type, seq; uint8_t payload[1024]; size_t len; int status; } frame;

static size_t frames_out(harness *h, frame *fs, size_t max) {
    size_t n = 0, start = 0, i;
    for (i = 0; i < h->wire_len && n < max; i++) {
        if (h->wire[i] != 0) continue;
        if (i > start) {
            uint8_t tmp[2048];
            const uint8_t *p;
            size_t len = i - start;
            memcpy(tmp, h->wire + start, len);
            fs[n].status = proto_frame_decode(tmp, len, &fs[n].type, &fs[n].seq, &p, &fs[n].len);
            if (fs[n].status == PROTO_OK) memcpy(fs[n].payload, p, fs[n].len);
            n++;
        }
        start = i + 1;
    }
    h->wire_len = 0;
    return n;
}

static void send(proto_device *dev, uint8_t type, uint8_t seq, const uint8_t *payload, size_t len) {
    uint8_t buf[PROTO_ENCODED_SIZE(2048)];
    size_t n = proto_frame_encode(type, seq, payload, len, buf, sizeof buf);
    proto_device_feed(dev, buf, n);
}

static uint32_t u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static proto_device_info info;
static uint8_t rx_buf[PROTO_RX_BUF_SIZE(PROTO_DEFAULT_MAX_PAYLOAD)];
static uint8_t tx_buf[PROTO_TX_BUF_SIZE(PROTO_DEFAULT_MAX_PAYLOAD)];
static uint8_t in_buf[1000];
static uint8_t out_buf[OUT_BYTES];
static proto_op_cycles prof_buf[MAX_OPS];
static harness H;
static frame F[64];

static proto_device_config config(void) {
    proto_device_config c;
    memset(&c, 0, sizeof c);
    c.info = &info; c.user = &H; c.write = h_write; c.invoke = h_invoke; c.profile = h_profile;
    c.rx_buf = rx_buf; c.rx_cap = sizeof rx_buf; c.tx_buf = tx_buf; c.tx_cap = sizeof tx_buf;
    c.input_buf = in_buf; c.input_cap = sizeof in_buf; c.output_buf = out_buf; c.output_cap = sizeof out_buf;
    c.prof_buf = prof_buf; c.prof_cap = MAX_OPS;
    return c;
}

/* ------------------------------------------------------------------ codec */

static void test_crc(void) {
    const uint8_t v[] = "123456789";
    CHECK(proto_crc32(0, v, 9) == 0xCBF43926u); /* the CRC-32/IEEE check value */
    CHECK(proto_crc32(proto_crc32(0, v, 4), v + 4, 5) == 0xCBF43926u);
    CHECK(proto_crc32(0, v, 0) == 0);
}

static void roundtrip(const uint8_t *src, size_t n) {
    uint8_t enc[1200], dec[1200];
    size_t e = proto_cobs_encode(src, n, enc, sizeof enc), i;
    long d;
    int zero = 0;
    CHECK(e > 0 && e <= n + n / 254 + 1);
    for (i = 0; i < e; i++) zero |= enc[i] == 0;
    CHECK(!zero);
    d = proto_cobs_decode(enc, e, dec, sizeof dec);
    CHECK(d == (long)n && memcmp(dec, src, n) == 0);
    d = proto_cobs_decode(enc, e, enc, e); /* in place */
    CHECK(d == (long)n && memcmp(enc, src, n) == 0);
}

static void test_cobs(void) {
    uint8_t b[1000];
    size_t n;
    memset(b, 0, sizeof b);
    roundtrip(b, 0);
    roundtrip(b, 1); roundtrip(b, 600);
    for (n = 0; n < sizeof b; n++) b[n] = (uint8_t)(n % 255 + 1);
    roundtrip(b, 253); roundtrip(b, 254); roundtrip(b, 255); roundtrip(b, 508); roundtrip(b, 1000);
    b[254] = 0; roundtrip(b, 255); roundtrip(b, 256);
    { uint8_t bad[] = {3, 1, 0, 1}; uint8_t out[8]; CHECK(proto_cobs_decode(bad, 4, out, 8) == -1); }
    { uint8_t bad[] = {5, 1, 2}; uint8_t out[8]; CHECK(proto_cobs_decode(bad, 3, out, 8) == -1); }
    { uint8_t ok[] = {3, 1, 2, 2, 3}; uint8_t out[3]; CHECK(proto_cobs_decode(ok, 5, out, 3) == -1); } /* cap */
    { uint8_t out[4]; CHECK(proto_cobs_encode(b, 10, out, 4) == 0); }
}

static void test_frames(void) {
    uint8_t p[300], buf[PROTO_ENCODED_SIZE(300)], t, s;
    const uint8_t *q;
    size_t n, len, i;
    for (i = 0; i < sizeof p; i++) p[i] = (uint8_t)(i * 7);
    n = proto_frame_encode(PROTO_T_SET_INPUT, 200, p, sizeof p, buf, sizeof buf);
    CHECK(n > 0 && buf[n - 1] == 0);
    for (i = 0; i + 1 < n; i++) CHECK(buf[i] != 0);
    CHECK(proto_frame_decode(buf, n - 1, &t, &s, &q, &len) == PROTO_OK);
    CHECK(t == PROTO_T_SET_INPUT && s == 200 && len == sizeof p && memcmp(q, p, len) == 0);
    CHECK(proto_frame_encode(1, 1, p, sizeof p, buf, sizeof buf - 1) == 0); /* exact size is needed */
    n = proto_frame_encode(PROTO_T_HELLO, 9, NULL, 0, buf, sizeof buf);
    buf[3] ^= 0x10;                                                          /* one flipped bit */
    CHECK(proto_frame_decode(buf, n - 1, &t, &s, &q, &len) != PROTO_OK);
    CHECK(proto_frame_decode(buf, 3, &t, &s, &q, &len) == PROTO_E_FRAMING);
}

/* ------------------------------------------------------------------ device */

static void test_session(void) {
    proto_device dev;
    proto_device_config c = config();
    uint8_t chunk[4 + 256], off[4] = {0, 0, 0, 0};
    size_t n, i;
    memset(&H, 0, sizeof H);
    H.out_len = OUT_BYTES; H.n_ops = MAX_OPS;
    memset(&info, 0, sizeof info);
    info.board_id = "unit-board"; info.firmware_version = "unit 1";
    info.input_bytes = 300; info.output_bytes = OUT_BYTES; info.window = 4; info.flags = PROTO_FLAG_PROFILE;
    CHECK(proto_device_init(&dev, &c) == PROTO_OK);
    n = frames_out(&H, F, 64);
    CHECK(n == 1 && F[0].type == PROTO_T_BOOT && F[0].status == PROTO_OK);
    CHECK(dev.max_payload == PROTO_DEFAULT_MAX_PAYLOAD);

    /* before HELLO: refused with NO_SESSION; garbage is NAKed and skipped */
    send(&dev, PROTO_T_INVOKE, 1, NULL, 0);
    proto_device_feed(&dev, (const uint8_t *)"\r\nnoise\xff\x01", 9);
    proto_device_feed(&dev, (const uint8_t *)"\0", 1); /* the host starts HELLO with a delimiter */
    send(&dev, PROTO_T_HELLO, 2, NULL, 0);
    n = frames_out(&H, F, 64);
    CHECK(n == 3 && F[0].type == PROTO_T_ERROR && F[0].payload[0] == PROTO_E_NO_SESSION);
    CHECK(F[1].type == PROTO_T_NAK); /* the noise */
    CHECK(F[2].type == PROTO_T_INFO && F[2].seq == 2 && F[2].payload[0] == PROTO_VERSION);
    CHECK(F[2].payload[2] == 4 && u32(F[2].payload + 31) == 300);

    /* input in two chunks, the second duplicated (lost ACK): written once, acked twice */
    for (i = 0; i < 256; i++) chunk[4 + i] = 1;
    memcpy(chunk, off, 4);
    send(&dev, PROTO_T_SET_INPUT, 3, chunk, 4 + 256);
    chunk[0] = 0; chunk[1] = 1; /* offset 256 */
    send(&dev, PROTO_T_SET_INPUT, 4, chunk, 4 + 44);
    send(&dev, PROTO_T_SET_INPUT, 4, chunk, 4 + 44);
    n = frames_out(&H, F, 64);
    CHECK(n == 3 && F[0].type == PROTO_T_ACK && F[1].type == PROTO_T_ACK && F[2].type == PROTO_T_ACK);
    CHECK(u32(F[2].payload + 1) == 256 && dev.duplicates == 1);
    /* a chunk past the end is refused */
    send(&dev, PROTO_T_SET_INPUT, 5, chunk, 4 + 45);
    n = frames_out(&H, F, 64);
    CHECK(n == 1 && F[0].type == PROTO_T_ERROR && F[0].payload[0] == PROTO_E_BAD_OFFSET);

    /* INVOKE: ACK then RESULT; a retry gets the same RESULT without a second inference */
    send(&dev, PROTO_T_INVOKE, 6, NULL, 0);
    send(&dev, PROTO_T_INVOKE, 6, NULL, 0);
    n = frames_out(&H, F, 64);
    CHECK(n == 3 && F[0].type == PROTO_T_ACK && F[1].type == PROTO_T_RESULT && F[2].type == PROTO_T_RESULT);
    CHECK(H.invokes == 1 && F[1].len == F[2].len && memcmp(F[1].payload, F[2].payload, F[1].len) == 0);
    CHECK(u32(F[1].payload) == 300 && u32(F[1].payload + 4) == 1); /* sum of 300 ones; cycles > 2^32 */
    CHECK(u32(F[1].payload + 8) == OUT_BYTES && F[1].len == PROTO_DEFAULT_MAX_PAYLOAD);
    /* the rest of the output by pages */
    {
        uint8_t o[4];
        size_t got = F[1].len - 12;
        o[0] = (uint8_t)got; o[1] = (uint8_t)(got >> 8); o[2] = 0; o[3] = 0;
        send(&dev, PROTO_T_READ_OUTPUT, 7, o, 4);
        n = frames_out(&H, F, 64);
        CHECK(n == 1 && F[0].type == PROTO_T_OUTPUT && u32(F[0].payload) == got);
        CHECK(F[0].payload[8] == (uint8_t)(300 + got));
    }
    /* same seq, new type: not a duplicate */
    send(&dev, PROTO_T_INVOKE, 7, NULL, 0);
    n = frames_out(&H, F, 64);
    CHECK(n == 2 && H.invokes == 2);

    /* PROFILE in pages */
    {
        uint8_t first[2] = {0, 0};
        size_t got = 0;
        send(&dev, PROTO_T_PROFILE, 8, first, 2);
        n = frames_out(&H, F, 64);
        CHECK(n == 2 && F[0].type == PROTO_T_ACK && F[1].type == PROTO_T_PROFILE_PAGE);
        CHECK(F[1].payload[0] == MAX_OPS && F[1].payload[4] == 25);
        got = F[1].payload[4];
        while (got < MAX_OPS) {
            first[0] = (uint8_t)got;
            send(&dev, PROTO_T_PROFILE, (uint8_t)(9 + got), first, 2);
            n = frames_out(&H, F, 64);
            CHECK(n == 1 && F[0].type == PROTO_T_PROFILE_PAGE && F[0].payload[2] == got);
            if (n != 1 || F[0].payload[4] == 0) break;
            got += F[0].payload[4];
        }
        CHECK(got == MAX_OPS && H.profiles == 1);
    }

    /* damaged frame -> NAK; oversize frame -> NAK OVERFLOW, and the next frame still works */
    {
        uint8_t buf[64];
        size_t m = proto_frame_encode(PROTO_T_INVOKE, 50, NULL, 0, buf, sizeof buf);
        uint8_t big[600];
        buf[2] ^= 0x40;
        proto_device_feed(&dev, buf, m);
        memset(big, 0x55, sizeof big);
        proto_device_feed(&dev, big, sizeof big);
        proto_device_feed(&dev, (const uint8_t *)"\0", 1);
        send(&dev, PROTO_T_HELLO, 51, NULL, 0);
        n = frames_out(&H, F, 64);
        CHECK(n == 3 && F[0].type == PROTO_T_NAK && F[1].type == PROTO_T_NAK &&
              F[1].payload[0] == PROTO_E_OVERFLOW && F[2].type == PROTO_T_INFO);
    }
    /* unknown type and wrong version */
    send(&dev, 0x33, 60, NULL, 0);
    n = frames_out(&H, F, 64);
    CHECK(n == 1 && F[0].type == PROTO_T_ERROR && F[0].payload[0] == PROTO_E_UNKNOWN_TYPE);
}

static void test_config_errors(void) {
    proto_device dev;
    proto_device_config c = config();
    memset(&info, 0, sizeof info);
    info.input_bytes = 10; info.output_bytes = 10;
    c.rx_cap = PROTO_RX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD) - 1;
    CHECK(proto_device_init(&dev, &c) == PROTO_E_TOO_LARGE);
    c = config();
    c.write = NULL;
    CHECK(proto_device_init(&dev, &c) != PROTO_OK);
    c = config();
    info.input_bytes = sizeof in_buf + 1;
    CHECK(proto_device_init(&dev, &c) == PROTO_E_TOO_LARGE);
    /* the smallest buffers work and cap the payload */
    {
        static uint8_t rx[PROTO_RX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD)], tx[PROTO_TX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD)];
        c = config();
        info.input_bytes = 10;
        c.rx_buf = rx; c.rx_cap = sizeof rx; c.tx_buf = tx; c.tx_cap = sizeof tx;
        memset(&H, 0, sizeof H);
        CHECK(proto_device_init(&dev, &c) == PROTO_OK && dev.max_payload == PROTO_MIN_MAX_PAYLOAD);
    }
}

int main(void) {
    test_crc();
    test_cobs();
    test_frames();
    test_session();
    test_config_errors();
    printf("protocol_unit: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
