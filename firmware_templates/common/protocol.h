/*
 * ofa-mcu wire protocol, version 1: device side and frame codec (plain C99, no HAL, no TFLM, no malloc).
 *
 * Specification: docs/PROTOCOL.md. The host side is pipeline/serial/ (Python); the host tests load this
 * very file, compiled for the host, through ctypes, so the firmware and host are tested against each other.
 *
 * Frame on the wire:  COBS( ver:u8 | type:u8 | seq:u8 | len:u16le | payload[len] | crc32:u32le ) 0x00
 * CRC-32/IEEE 802.3 (reflected poly 0xEDB88320, init 0xFFFFFFFF, xorout 0xFFFFFFFF: same as zlib.crc32),
 * computed over header and payload. All multi-byte fields are little-endian, written byte by byte.
 *
 * ---------------------------------------------------------------------------------------------------------
 * How a firmware main loop uses it (the generated main.cc does exactly this):
 *
 *   #include "protocol.h"
 *
 *   static uint8_t rx_buf[PROTO_RX_BUF_SIZE(PROTO_DEFAULT_MAX_PAYLOAD)];
 *   static uint8_t tx_buf[PROTO_TX_BUF_SIZE(PROTO_DEFAULT_MAX_PAYLOAD)];
 *   static uint8_t out_buf[kOutputBytes];
 *   static proto_op_cycles prof_buf[kMaxOps];          // optional: per-op profile
 *   static proto_device dev;
 *
 *   static int uart_write_cb(void *user, const uint8_t *p, size_t n) { uart_write(p, n); return 0; }
 *   static int invoke_cb(void *user, const uint8_t *in, size_t in_len,
 *                        uint8_t *out, size_t out_cap, size_t *out_len, uint64_t *cycles) {
 *       // `in` is cfg.input_buf: when that is the TFLM input tensor's own buffer nothing is copied.
 *       uint32_t t0 = cycle_counter();
 *       if (interpreter->Invoke() != kTfLiteOk) return PROTO_E_INVOKE_FAILED;
 *       *cycles = (uint32_t)(cycle_counter() - t0);
 *       memcpy(out, output->data.int8, kOutputBytes); *out_len = kOutputBytes;
 *       return 0;
 *   }
 *
 *   int main(void) {
 *       board_init(); uart_init(BAUD); model_setup();              // AllocateTensors() etc.
 *       proto_device_info info = {0};
 *       info.board_id = "nucleo-f746zg"; info.firmware_version = "ofa-mcu 0.1.0";
 *       memcpy(info.model_hash, kModelSha256, PROTO_MODEL_HASH_LEN);   // first 16 B of sha256(.tflite)
 *       info.input_dtype = PROTO_DTYPE_INT8; info.input_rank = 4;
 *       info.input_dims[0] = 1; info.input_dims[1] = H; info.input_dims[2] = W; info.input_dims[3] = C;
 *       info.input_bytes = H * W * C; info.input_scale = kInScale; info.input_zero_point = kInZp;
 *       info.output_dtype = PROTO_DTYPE_INT8; info.output_bytes = kOutputBytes;
 *       info.output_scale = kOutScale; info.output_zero_point = kOutZp;
 *       info.arena_bytes = kArenaSize; info.cycle_hz = SystemCoreClock;
 *       info.flags = PROTO_FLAG_PROFILE; info.window = 1;      // >1 only with an interrupt-driven RX FIFO
 *
 *       proto_device_config cfg = {0};
 *       cfg.info = &info;
 *       cfg.write = uart_write_cb; cfg.invoke = invoke_cb; cfg.profile = profile_cb_or_NULL;
 *       cfg.rx_buf = rx_buf; cfg.rx_cap = sizeof rx_buf; cfg.tx_buf = tx_buf; cfg.tx_cap = sizeof tx_buf;
 *       cfg.input_buf = input->data.int8; cfg.input_cap = input->bytes;
 *       cfg.output_buf = out_buf; cfg.output_cap = sizeof out_buf;
 *       cfg.prof_buf = prof_buf; cfg.prof_cap = kMaxOps;
 *       if (proto_device_init(&dev, &cfg) != 0) fatal();       // also sends the BOOT banner
 *       for (;;) {
 *           uint8_t b[32];
 *           size_t n = uart_read_nonblocking(b, sizeof b);       // whatever has arrived, may be 0
 *           if (n) proto_device_feed(&dev, b, n);                // replies go out through cfg.write
 *       }
 *   }
 * ---------------------------------------------------------------------------------------------------------
 * Callbacks run synchronously inside proto_device_feed(); INVOKE blocks there for the inference. Bytes
 * that arrive meanwhile must be kept by the UART driver (a FIFO or an RX ring buffer) when window > 1.
 * The host sends one request at a time except SET_INPUT chunks, of which it keeps up to `window` in flight.
 */
#ifndef OFA_MCU_PROTOCOL_H
#define OFA_MCU_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROTO_VERSION 1u
#define PROTO_HEADER_SIZE 5u           /* ver, type, seq, len:u16le */
#define PROTO_CRC_SIZE 4u
#define PROTO_MODEL_HASH_LEN 16u       /* first 16 bytes of sha256 of the .tflite file */
#define PROTO_MAX_STRING 32u           /* board id and firmware version are cut to this many bytes */
#define PROTO_CHUNK_HEADER 4u          /* SET_INPUT: offset:u32le before the data */
/* 256 input bytes per SET_INPUT frame: a 271-byte receive buffer, comfortable on a 2 KB-SRAM part. */
#define PROTO_DEFAULT_MAX_PAYLOAD (256u + PROTO_CHUNK_HEADER)
#define PROTO_MIN_MAX_PAYLOAD 132u     /* the INFO reply (<= 130 B) must fit; 128 input bytes per chunk */
#define PROTO_MAX_MAX_PAYLOAD 65535u

/* Bytes of one decoded frame (header + payload + CRC). */
#define PROTO_FRAME_SIZE(max_payload) (PROTO_HEADER_SIZE + (max_payload) + PROTO_CRC_SIZE)
/* COBS adds one byte per 254 (rounded up) plus one; the delimiter adds one more. */
#define PROTO_ENCODED_SIZE(max_payload) \
    (PROTO_FRAME_SIZE(max_payload) + (PROTO_FRAME_SIZE(max_payload) + 253u) / 254u + 2u)
/* Buffer sizes to give proto_device_init() for a given largest payload. */
#define PROTO_RX_BUF_SIZE(max_payload) PROTO_ENCODED_SIZE(max_payload)
#define PROTO_TX_BUF_SIZE(max_payload) PROTO_ENCODED_SIZE(max_payload)

/* Frame types. Requests (host -> device) have the top bit clear; replies and events have it set. */
enum {
    PROTO_T_HELLO = 0x01,        /* no payload -> INFO; opens a session (nothing else works before it) */
    PROTO_T_SET_INPUT = 0x02,    /* offset:u32 data[...] -> ACK */
    PROTO_T_INVOKE = 0x03,       /* no payload -> ACK at once, then RESULT when the inference is done */
    PROTO_T_READ_OUTPUT = 0x04,  /* offset:u32 -> OUTPUT (pages of an output larger than one RESULT) */
    PROTO_T_PROFILE = 0x05,      /* first_op:u16 -> PROFILE_PAGE; first_op 0: ACK, profiled inference, page */
    PROTO_T_INFO = 0x81,         /* device info, see proto_device_info and docs/PROTOCOL.md */
    PROTO_T_ACK = 0x82,          /* acked_type:u8 offset:u32 (offset of the SET_INPUT chunk, else 0) */
    PROTO_T_RESULT = 0x83,       /* cycles:u64 total_len:u32 data[...] (first bytes of the output) */
    PROTO_T_OUTPUT = 0x84,       /* offset:u32 total_len:u32 data[...] */
    PROTO_T_PROFILE_PAGE = 0x85, /* total_ops:u16 first_op:u16 count:u8 then count x (op_code:u16 cycles:u64) */
    PROTO_T_NAK = 0x86,          /* reason:u8 (PROTO_E_*): a frame arrived damaged; the host resends */
    PROTO_T_BOOT = 0x87,         /* sent by proto_device_init() with seq 0: same payload as INFO */
    PROTO_T_ERROR = 0x8F         /* code:u8 request_type:u8 detail:u32 */
};

/* Error codes carried by NAK and ERROR frames and returned by callbacks (0 = success). */
enum {
    PROTO_OK = 0,
    PROTO_E_CRC = 1,             /* NAK: CRC mismatch */
    PROTO_E_FRAMING = 2,         /* NAK: bad COBS, short frame, or length field disagrees */
    PROTO_E_OVERFLOW = 3,        /* NAK: frame longer than the receive buffer */
    PROTO_E_VERSION = 4,         /* ERROR: frame version is not PROTO_VERSION */
    PROTO_E_UNKNOWN_TYPE = 5,    /* ERROR */
    PROTO_E_BAD_LENGTH = 6,      /* ERROR: payload length wrong for the type */
    PROTO_E_BAD_OFFSET = 7,      /* ERROR: chunk or read outside the buffer (detail = offset) */
    PROTO_E_NO_SESSION = 8,      /* ERROR: request before HELLO (the device has reset): re-HELLO, resend */
    PROTO_E_INVOKE_FAILED = 9,   /* ERROR: the invoke callback failed (detail = its return value) */
    PROTO_E_UNSUPPORTED = 10,    /* ERROR: e.g. PROFILE without a profile callback */
    PROTO_E_NO_OUTPUT = 11,      /* ERROR: READ_OUTPUT or PROFILE page before an INVOKE / PROFILE run */
    PROTO_E_TOO_LARGE = 12       /* ERROR: output or profile larger than the buffer given at init */
};

/* Tensor element types (values as in TFLite's TensorType where one exists). */
enum { PROTO_DTYPE_FLOAT32 = 0, PROTO_DTYPE_INT32 = 2, PROTO_DTYPE_UINT8 = 3, PROTO_DTYPE_INT8 = 9,
       PROTO_DTYPE_INT16 = 7 };

/* proto_device_info.flags */
#define PROTO_FLAG_PROFILE 0x01u          /* PROFILE is implemented */
#define PROTO_FLAG_CYCLES_TIMER 0x02u     /* cycles come from a timer at cycle_hz, not the CPU cycle counter */
#define PROTO_FLAG_SIMULATED 0x04u        /* cycles come from a latency model (virtual board) */
#define PROTO_FLAG_REFERENCE_KERNELS 0x08u /* TFLM reference kernels: logits must equal the host's exactly */
#define PROTO_FLAG_INSTRUCTIONS 0x40u     /* `cycles` are instructions executed in an emulator (QEMU -icount), not cycles */

typedef struct proto_device_info {
    const char *board_id;          /* e.g. "nucleo-f746zg"; at most PROTO_MAX_STRING bytes are sent */
    const char *firmware_version;  /* e.g. "ofa-mcu 0.1.0" */
    uint8_t model_hash[PROTO_MODEL_HASH_LEN];
    uint8_t input_dtype;           /* PROTO_DTYPE_* */
    uint8_t input_rank;            /* <= 4 */
    uint16_t input_dims[4];        /* NHWC */
    uint32_t input_bytes;          /* bytes the host sends per sample */
    float input_scale;
    int32_t input_zero_point;
    uint8_t output_dtype;
    uint32_t output_bytes;
    float output_scale;
    int32_t output_zero_point;
    uint32_t arena_bytes;          /* tensor arena size compiled into the firmware */
    uint32_t cycle_hz;             /* ticks per second of the counter behind `cycles` */
    uint8_t flags;                 /* PROTO_FLAG_* */
    uint8_t window;                /* SET_INPUT frames the host may keep in flight (0 is taken as 1) */
} proto_device_info;

typedef struct proto_op_cycles {
    uint16_t op_code;              /* TFLite BuiltinOperator of the op */
    uint64_t cycles;
} proto_op_cycles;

/* Send bytes to the host; block until queued. Return 0, or non-zero if they could not be sent. */
typedef int (*proto_write_fn)(void *user, const uint8_t *data, size_t len);
/* Optional: store one input chunk yourself (else it is copied into input_buf). Return 0 or PROTO_E_*. */
typedef int (*proto_set_input_fn)(void *user, uint32_t offset, const uint8_t *data, size_t len);
/* Run one inference on the input; write the output and the elapsed cycles. Return 0 or non-zero. */
typedef int (*proto_invoke_fn)(void *user, const uint8_t *input, size_t input_len, uint8_t *output,
                               size_t output_cap, size_t *output_len, uint64_t *cycles);
/* Optional: run one profiled inference on the current input, fill ops[0..*n_ops). Return 0 or non-zero. */
typedef int (*proto_profile_fn)(void *user, proto_op_cycles *ops, size_t cap, size_t *n_ops);

typedef struct proto_device_config {
    const proto_device_info *info; /* must stay valid while the device is in use */
    void *user;                    /* passed to every callback */
    proto_write_fn write;          /* required */
    proto_invoke_fn invoke;        /* required */
    proto_set_input_fn set_input;  /* optional */
    proto_profile_fn profile;      /* optional (needs prof_buf) */
    uint8_t *rx_buf; size_t rx_cap;         /* >= PROTO_RX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD) */
    uint8_t *tx_buf; size_t tx_cap;         /* >= PROTO_TX_BUF_SIZE(PROTO_MIN_MAX_PAYLOAD) */
    uint8_t *input_buf; size_t input_cap;   /* >= info->input_bytes (may be NULL with set_input) */
    uint8_t *output_buf; size_t output_cap; /* >= info->output_bytes */
    proto_op_cycles *prof_buf; size_t prof_cap;
} proto_device_config;

/* Device state. Allocate it statically; treat the fields as private (the counters may be read). */
typedef struct proto_device {
    proto_device_config cfg;
    size_t max_payload;            /* largest payload both buffers allow */
    size_t rx_len;                 /* bytes of the frame being received */
    uint8_t rx_overflow;           /* the current frame overflowed: drop it at the next delimiter */
    uint8_t session;               /* a HELLO has been received since init */
    uint8_t have_last;             /* last_seq/last_type/tx_len describe the last cached reply */
    uint8_t last_seq, last_type;
    uint8_t have_last_chunk;       /* the previous request was this SET_INPUT chunk (for duplicates) */
    uint8_t last_chunk_seq;
    uint32_t last_chunk_offset;
    size_t tx_len;                 /* encoded length of the cached reply in tx_buf */
    uint8_t have_output;           /* output_buf holds the result of the last INVOKE */
    size_t output_len;
    uint64_t last_cycles;
    uint8_t have_profile;
    size_t prof_len;
    uint8_t small_tx[24];          /* ACK, NAK and ERROR frames: encoded here so tx_buf keeps the cached reply */
    /* counters, for diagnostics */
    uint32_t frames_ok, frames_bad, duplicates, errors_sent;
} proto_device;

/* Check the configuration, reset the state, send a BOOT frame. Return 0 or a PROTO_E_* code. */
int proto_device_init(proto_device *dev, const proto_device_config *cfg);
/* Feed received bytes (any split: byte by byte or many frames at once). Replies go through cfg.write. */
void proto_device_feed(proto_device *dev, const uint8_t *data, size_t n);

/* ---- Frame codec, shared with the host (used by the device code and by the host tests) ---- */

/* CRC-32/IEEE. Start with crc = 0; chain calls to continue (zlib.crc32 semantics). */
uint32_t proto_crc32(uint32_t crc, const uint8_t *data, size_t n);
/* COBS-encode n bytes into dst (no delimiter). Return the encoded length, or 0 if cap is too small. */
size_t proto_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);
/* COBS-decode n bytes (no delimiter) into dst; dst may equal src. Return the length, or -1 if invalid. */
long proto_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);
/* Build a whole wire frame (COBS + trailing 0x00) in out. Return its length, or 0 if cap is too small. */
size_t proto_frame_encode(uint8_t type, uint8_t seq, const uint8_t *payload, size_t len, uint8_t *out,
                          size_t cap);
/* Decode one wire frame (without the 0x00 delimiter) in place. On success return PROTO_OK and point
 * *payload into buf; else return PROTO_E_FRAMING, PROTO_E_CRC or PROTO_E_VERSION. */
int proto_frame_decode(uint8_t *buf, size_t n, uint8_t *type, uint8_t *seq, const uint8_t **payload,
                       size_t *len);

/* sizeof of the public structs, so a host binding (ctypes) can check its mirror of them. */
size_t proto_abi_size(int which); /* 0 info, 1 op_cycles, 2 config, 3 device */

#ifdef __cplusplus
}
#endif

#endif /* OFA_MCU_PROTOCOL_H */
