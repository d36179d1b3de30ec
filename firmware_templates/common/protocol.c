/*
 * ofa-mcu wire protocol v1: frame codec and device state machine. See protocol.h and docs/PROTOCOL.md.
 * Plain C99; no allocation; every buffer comes from the caller. Compiles for the host (tests, virtual
 * board, fuzzing) and for arm-none-eabi.
 */
#include "protocol.h"

#include <string.h>

/* ------------------------------------------------------------------ little-endian field helpers */

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void put_u64(uint8_t *p, uint64_t v) { put_u32(p, (uint32_t)v); put_u32(p + 4, (uint32_t)(v >> 32)); }

static void put_f32(uint8_t *p, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u); /* IEEE 754 binary32 on every target we build for */
    put_u32(p, u);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ------------------------------------------------------------------ CRC-32/IEEE */

/* A 16-entry table: 64 bytes of flash instead of 1 KB, two lookups per byte; fast enough at 1 Mbaud. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t proto_crc32(uint32_t crc, const uint8_t *data, size_t n) {
    size_t i;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

/* ------------------------------------------------------------------ COBS */

size_t proto_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
    size_t i, out, code_pos = 0;
    uint8_t code = 1;
    if (cap < 1) return 0;
    out = 1;
    for (i = 0; i < n; i++) {
        if (src[i] != 0) {
            if (out >= cap) return 0;
            dst[out++] = src[i];
            code++;
        }
        if (src[i] == 0 || code == 0xFF) {
            dst[code_pos] = code;
            if (out >= cap) return 0;
            code_pos = out++;
            code = 1;
        }
    }
    dst[code_pos] = code;
    return out;
}

long proto_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
    size_t i = 0, o = 0, k;
    while (i < n) {
        uint8_t code = src[i++];
        if (code == 0) return -1;
        k = (size_t)code - 1u;
        if (k > n - i || k > cap - o) return -1;
        /* In place (dst == src) is safe: the write index never passes the read index. */
        while (k--) {
            uint8_t b = src[i++];
            if (b == 0) return -1;
            dst[o++] = b;
        }
        if (code != 0xFF && i < n) {
            if (o >= cap) return -1;
            dst[o++] = 0;
        }
    }
    return (long)o;
}

/* ------------------------------------------------------------------ frames */

size_t proto_frame_encode(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len, uint8_t *out,
                          size_t cap) {
    /* Encode header+payload+CRC at the end of `out`, then COBS it to the front: no second buffer. */
    size_t raw = PROTO_HEADER_SIZE + len + PROTO_CRC_SIZE, enc;
    uint8_t *r;
    uint32_t crc;
    if (len > PROTO_MAX_MAX_PAYLOAD || cap < PROTO_ENCODED_SIZE(len)) return 0;
    r = out + (cap - raw);
    r[0] = (uint8_t)PROTO_VERSION;
    r[1] = type;
    r[2] = seq;
    put_u16(r + 3, (uint16_t)len);
    if (len) memmove(r + PROTO_HEADER_SIZE, payload, len);
    crc = proto_crc32(0, r, PROTO_HEADER_SIZE + len);
    put_u32(r + PROTO_HEADER_SIZE + len, crc);
    /* COBS output at index j needs input index >= j - 1 - j/254 already consumed: the slack reserved
     * by PROTO_ENCODED_SIZE (one byte per 254 plus two) keeps the writer behind the reader. */
    enc = proto_cobs_encode(r, raw, out, cap - 1u);
    if (enc == 0) return 0;
    out[enc] = 0;
    return enc + 1u;
}

int proto_frame_decode(uint8_t *buf, size_t n, uint8_t *type, uint8_t *seq, const uint8_t **payload,
                       size_t *len) {
    long m = proto_cobs_decode(buf, n, buf, n);
    size_t plen;
    uint32_t crc;
    if (m < (long)(PROTO_HEADER_SIZE + PROTO_CRC_SIZE)) return PROTO_E_FRAMING;
    plen = get_u16(buf + 3);
    if (plen + PROTO_HEADER_SIZE + PROTO_CRC_SIZE != (size_t)m) return PROTO_E_FRAMING;
    crc = proto_crc32(0, buf, PROTO_HEADER_SIZE + plen);
    if (crc != get_u32(buf + PROTO_HEADER_SIZE + plen)) return PROTO_E_CRC;
    if (buf[0] != PROTO_VERSION) return PROTO_E_VERSION;
    *type = buf[1];
    *seq = buf[2];
    *payload = buf + PROTO_HEADER_SIZE;
    *len = plen;
    return PROTO_OK;
}

/* ------------------------------------------------------------------ device */

static void send_raw(proto_device *dev, const uint8_t *p, size_t n) {
    if (n) (void)dev->cfg.write(dev->cfg.user, p, n); /* a failed write is a lost frame: the host retries */
}

static void send_small(proto_device *dev, uint8_t type, uint8_t seq, const uint8_t *payload, size_t len) {
    size_t n = proto_frame_encode(type, seq, payload, len, dev->small_tx, sizeof dev->small_tx);
    send_raw(dev, dev->small_tx, n);
}

static void send_ack(proto_device *dev, uint8_t seq, uint8_t acked_type, uint32_t offset) {
    uint8_t p[5];
    p[0] = acked_type;
    put_u32(p + 1, offset);
    send_small(dev, PROTO_T_ACK, seq, p, sizeof p);
}

static void send_nak(proto_device *dev, uint8_t seq, uint8_t reason) {
    send_small(dev, PROTO_T_NAK, seq, &reason, 1);
}

static void send_error(proto_device *dev, uint8_t seq, uint8_t code, uint8_t req_type, uint32_t detail) {
    uint8_t p[6];
    p[0] = code;
    p[1] = req_type;
    put_u32(p + 2, detail);
    dev->errors_sent++;
    send_small(dev, PROTO_T_ERROR, seq, p, sizeof p);
}

/* Encode a reply into tx_buf, send it, and remember it so a retried request gets it again unchanged. */
static void send_cached(proto_device *dev, uint8_t req_type, uint8_t seq, uint8_t type, size_t len) {
    /* The payload was built at tx_buf + payload_offset(); proto_frame_encode moves it into place. */
    size_t off = dev->cfg.tx_cap - (PROTO_HEADER_SIZE + len + PROTO_CRC_SIZE) + PROTO_HEADER_SIZE;
    size_t n = proto_frame_encode(type, seq, dev->cfg.tx_buf + off, len, dev->cfg.tx_buf, dev->cfg.tx_cap);
    dev->tx_len = n;
    dev->have_last = n != 0;
    dev->last_seq = seq;
    dev->last_type = req_type;
    send_raw(dev, dev->cfg.tx_buf, n);
}

/* Where to build a reply payload of `len` bytes so proto_frame_encode needs no copy. */
static uint8_t *payload_slot(proto_device *dev, size_t len) {
    return dev->cfg.tx_buf + dev->cfg.tx_cap - (PROTO_HEADER_SIZE + len + PROTO_CRC_SIZE) + PROTO_HEADER_SIZE;
}

static size_t put_string(uint8_t *p, const char *s) {
    size_t n = 0;
    if (s) while (n < PROTO_MAX_STRING && s[n]) n++;
    p[0] = (uint8_t)n;
    if (n) memcpy(p + 1, s, n);
    return n + 1u;
}

static size_t info_len(const proto_device_info *info) {
    size_t b = 0, f = 0;
    if (info->board_id) while (b < PROTO_MAX_STRING && info->board_id[b]) b++;
    if (info->firmware_version) while (f < PROTO_MAX_STRING && info->firmware_version[f]) f++;
    return 64u + 1u + b + 1u + f;
}

static void write_info(proto_device *dev, uint8_t *p) {
    const proto_device_info *in = dev->cfg.info;
    int i;
    p[0] = (uint8_t)PROTO_VERSION;
    p[1] = in->flags;
    p[2] = in->window ? in->window : 1u;
    put_u16(p + 3, (uint16_t)dev->max_payload);
    memcpy(p + 5, in->model_hash, PROTO_MODEL_HASH_LEN);
    p[21] = in->input_dtype;
    p[22] = in->input_rank;
    for (i = 0; i < 4; i++) put_u16(p + 23 + 2 * i, in->input_dims[i]);
    put_u32(p + 31, in->input_bytes);
    put_f32(p + 35, in->input_scale);
    put_u32(p + 39, (uint32_t)in->input_zero_point);
    p[43] = in->output_dtype;
    put_u32(p + 44, in->output_bytes);
    put_f32(p + 48, in->output_scale);
    put_u32(p + 52, (uint32_t)in->output_zero_point);
    put_u32(p + 56, in->arena_bytes);
    put_u32(p + 60, in->cycle_hz);
    p += 64;
    p += put_string(p, in->board_id);
    (void)put_string(p, in->firmware_version);
}

static void send_info(proto_device *dev, uint8_t type, uint8_t seq) {
    size_t len = info_len(dev->cfg.info);
    write_info(dev, payload_slot(dev, len));
    send_cached(dev, type == PROTO_T_BOOT ? 0 : PROTO_T_HELLO, seq, type, len);
    dev->have_last = 0; /* HELLO is never answered from the cache: it always restarts the session */
}

int proto_device_init(proto_device *dev, const proto_device_config *cfg) {
    size_t rx_pl, tx_pl;
    if (!dev || !cfg || !cfg->info || !cfg->write || !cfg->invoke || !cfg->rx_buf || !cfg->tx_buf)
        return PROTO_E_BAD_LENGTH;
    if (cfg->rx_cap < PROTO_RX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD) ||
        cfg->tx_cap < PROTO_TX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD))
        return PROTO_E_TOO_LARGE;
    if (!cfg->set_input && (!cfg->input_buf || cfg->input_cap < cfg->info->input_bytes))
        return PROTO_E_TOO_LARGE;
    if (!cfg->output_buf || cfg->output_cap < cfg->info->output_bytes) return PROTO_E_TOO_LARGE;
    if (cfg->profile && (!cfg->prof_buf || cfg->prof_cap == 0)) return PROTO_E_TOO_LARGE;
    memset(dev, 0, sizeof *dev);
    dev->cfg = *cfg;
    /* The largest payload whose encoded frame fits both buffers (PROTO_ENCODED_SIZE is monotonic). */
    for (rx_pl = PROTO_MIN_MAX_PAYLOAD; rx_pl < PROTO_MAX_MAX_PAYLOAD &&
         PROTO_ENCODED_SIZE(rx_pl + 1u) <= cfg->rx_cap; rx_pl++) {}
    for (tx_pl = PROTO_MIN_MAX_PAYLOAD; tx_pl < PROTO_MAX_MAX_PAYLOAD &&
         PROTO_ENCODED_SIZE(tx_pl + 1u) <= cfg->tx_cap; tx_pl++) {}
    dev->max_payload = rx_pl < tx_pl ? rx_pl : tx_pl;
    send_info(dev, PROTO_T_BOOT, 0);
    return PROTO_OK;
}

static void do_set_input(proto_device *dev, uint8_t seq, const uint8_t *p, size_t len) {
    uint32_t offset, total = dev->cfg.info->input_bytes;
    size_t n;
    int rc;
    if (len < PROTO_CHUNK_HEADER) { send_error(dev, seq, PROTO_E_BAD_LENGTH, PROTO_T_SET_INPUT, (uint32_t)len); return; }
    offset = get_u32(p);
    n = len - PROTO_CHUNK_HEADER;
    if (offset > total || n > total - offset) {
        send_error(dev, seq, PROTO_E_BAD_OFFSET, PROTO_T_SET_INPUT, offset);
        return;
    }
    if (dev->have_last_chunk && dev->last_chunk_seq == seq && dev->last_chunk_offset == offset) {
        dev->duplicates++; /* our ACK was lost: acknowledge again, do not write twice */
    } else {
        if (dev->cfg.set_input) {
            rc = dev->cfg.set_input(dev->cfg.user, offset, p + PROTO_CHUNK_HEADER, n);
            if (rc) { send_error(dev, seq, (uint8_t)rc, PROTO_T_SET_INPUT, offset); return; }
        } else if (n) {
            memcpy(dev->cfg.input_buf + offset, p + PROTO_CHUNK_HEADER, n);
        }
        dev->have_last = 0;
        dev->have_output = 0;
        dev->have_profile = 0;
    }
    dev->have_last_chunk = 1;
    dev->last_chunk_seq = seq;
    dev->last_chunk_offset = offset;
    send_ack(dev, seq, PROTO_T_SET_INPUT, offset);
}

static void do_invoke(proto_device *dev, uint8_t seq) {
    size_t out_len = 0, n, room = dev->max_payload - 12u;
    uint64_t cycles = 0;
    uint8_t *p;
    int rc;
    send_ack(dev, seq, PROTO_T_INVOKE, 0); /* tell the host the request arrived before the long wait */
    rc = dev->cfg.invoke(dev->cfg.user, dev->cfg.input_buf, dev->cfg.info->input_bytes, dev->cfg.output_buf,
                         dev->cfg.output_cap, &out_len, &cycles);
    if (rc) { send_error(dev, seq, PROTO_E_INVOKE_FAILED, PROTO_T_INVOKE, (uint32_t)rc); return; }
    if (out_len > dev->cfg.output_cap) { send_error(dev, seq, PROTO_E_TOO_LARGE, PROTO_T_INVOKE, (uint32_t)out_len); return; }
    dev->have_output = 1;
    dev->output_len = out_len;
    dev->last_cycles = cycles;
    n = out_len < room ? out_len : room;
    p = payload_slot(dev, 12u + n);
    put_u64(p, cycles);
    put_u32(p + 8, (uint32_t)out_len);
    if (n) memcpy(p + 12, dev->cfg.output_buf, n);
    send_cached(dev, PROTO_T_INVOKE, seq, PROTO_T_RESULT, 12u + n);
}

static void do_read_output(proto_device *dev, uint8_t seq, const uint8_t *p, size_t len) {
    uint32_t offset;
    size_t n, room = dev->max_payload - 8u;
    uint8_t *q;
    if (len != 4) { send_error(dev, seq, PROTO_E_BAD_LENGTH, PROTO_T_READ_OUTPUT, (uint32_t)len); return; }
    if (!dev->have_output) { send_error(dev, seq, PROTO_E_NO_OUTPUT, PROTO_T_READ_OUTPUT, 0); return; }
    offset = get_u32(p);
    if (offset > dev->output_len) { send_error(dev, seq, PROTO_E_BAD_OFFSET, PROTO_T_READ_OUTPUT, offset); return; }
    n = dev->output_len - offset;
    if (n > room) n = room;
    q = payload_slot(dev, 8u + n);
    put_u32(q, offset);
    put_u32(q + 4, (uint32_t)dev->output_len);
    if (n) memcpy(q + 8, dev->cfg.output_buf + offset, n);
    send_cached(dev, PROTO_T_READ_OUTPUT, seq, PROTO_T_OUTPUT, 8u + n);
}

static void do_profile(proto_device *dev, uint8_t seq, const uint8_t *p, size_t len) {
    uint16_t first;
    size_t count, i, per_page = (dev->max_payload - 5u) / 10u;
    uint8_t *q;
    if (len != 2) { send_error(dev, seq, PROTO_E_BAD_LENGTH, PROTO_T_PROFILE, (uint32_t)len); return; }
    if (!dev->cfg.profile) { send_error(dev, seq, PROTO_E_UNSUPPORTED, PROTO_T_PROFILE, 0); return; }
    first = get_u16(p);
    if (first == 0) {
        size_t n_ops = 0;
        int rc;
        dev->have_profile = 0;
        send_ack(dev, seq, PROTO_T_PROFILE, 0); /* as for INVOKE: arrived, now running */
        rc = dev->cfg.profile(dev->cfg.user, dev->cfg.prof_buf, dev->cfg.prof_cap, &n_ops);
        if (rc) { send_error(dev, seq, PROTO_E_INVOKE_FAILED, PROTO_T_PROFILE, (uint32_t)rc); return; }
        if (n_ops > dev->cfg.prof_cap || n_ops > 0xFFFFu) {
            send_error(dev, seq, PROTO_E_TOO_LARGE, PROTO_T_PROFILE, (uint32_t)n_ops);
            return;
        }
        dev->have_profile = 1;
        dev->prof_len = n_ops;
    }
    if (!dev->have_profile) { send_error(dev, seq, PROTO_E_NO_OUTPUT, PROTO_T_PROFILE, first); return; }
    if (first > dev->prof_len) { send_error(dev, seq, PROTO_E_BAD_OFFSET, PROTO_T_PROFILE, first); return; }
    count = dev->prof_len - first;
    if (count > per_page) count = per_page;
    q = payload_slot(dev, 5u + 10u * count);
    put_u16(q, (uint16_t)dev->prof_len);
    put_u16(q + 2, first);
    q[4] = (uint8_t)count;
    for (i = 0; i < count; i++) {
        put_u16(q + 5 + 10 * i, dev->cfg.prof_buf[first + i].op_code);
        put_u64(q + 7 + 10 * i, dev->cfg.prof_buf[first + i].cycles);
    }
    send_cached(dev, PROTO_T_PROFILE, seq, PROTO_T_PROFILE_PAGE, 5u + 10u * count);
}

static void dispatch(proto_device *dev, uint8_t type, uint8_t seq, const uint8_t *p, size_t len) {
    if (type == PROTO_T_HELLO) {
        dev->session = 1;
        dev->have_last_chunk = 0;
        send_info(dev, PROTO_T_INFO, seq);
        return;
    }
    if (type & 0x80u) return; /* a reply type echoed back to us (e.g. a loopback): ignore it */
    if (!dev->session) { send_error(dev, seq, PROTO_E_NO_SESSION, type, 0); return; }
    if (type == PROTO_T_SET_INPUT) { do_set_input(dev, seq, p, len); return; }
    dev->have_last_chunk = 0;
    if (dev->have_last && dev->last_seq == seq && dev->last_type == type) {
        dev->duplicates++; /* a retry: answer from the cache, never run an INVOKE twice */
        send_raw(dev, dev->cfg.tx_buf, dev->tx_len);
        return;
    }
    dev->have_last = 0;
    switch (type) {
    case PROTO_T_INVOKE:
        if (len != 0) send_error(dev, seq, PROTO_E_BAD_LENGTH, type, (uint32_t)len);
        else do_invoke(dev, seq);
        break;
    case PROTO_T_READ_OUTPUT: do_read_output(dev, seq, p, len); break;
    case PROTO_T_PROFILE: do_profile(dev, seq, p, len); break;
    default: send_error(dev, seq, PROTO_E_UNKNOWN_TYPE, type, 0); break;
    }
}

static void end_of_frame(proto_device *dev) {
    uint8_t type = 0, seq = 0;
    const uint8_t *payload = 0;
    size_t len = 0;
    int rc;
    if (dev->rx_overflow) {
        dev->frames_bad++;
        send_nak(dev, 0, PROTO_E_OVERFLOW);
    } else if (dev->rx_len > 0) { /* an empty frame (0x00 0x00) is the host flushing a partial frame */
        rc = proto_frame_decode(dev->cfg.rx_buf, dev->rx_len, &type, &seq, &payload, &len);
        if (rc == PROTO_OK) {
            dev->frames_ok++;
            dispatch(dev, type, seq, payload, len);
        } else if (rc == PROTO_E_VERSION) {
            dev->frames_ok++;
            send_error(dev, seq, PROTO_E_VERSION, type, dev->cfg.rx_buf[0]);
        } else {
            dev->frames_bad++;
            /* The seq of a damaged frame is only a hint; the host resends whatever is unacknowledged. */
            send_nak(dev, dev->rx_len > 3 ? dev->cfg.rx_buf[2] : 0, (uint8_t)rc);
        }
    }
    dev->rx_len = 0;
    dev->rx_overflow = 0;
}

void proto_device_feed(proto_device *dev, const uint8_t *data, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        uint8_t b = data[i];
        if (b == 0) {
            end_of_frame(dev);
        } else if (dev->rx_len < dev->cfg.rx_cap) {
            dev->cfg.rx_buf[dev->rx_len++] = b;
        } else {
            dev->rx_overflow = 1;
        }
    }
}

size_t proto_abi_size(int which) {
    switch (which) {
    case 0: return sizeof(proto_device_info);
    case 1: return sizeof(proto_op_cycles);
    case 2: return sizeof(proto_device_config);
    case 3: return sizeof(proto_device);
    default: return 0;
    }
}
