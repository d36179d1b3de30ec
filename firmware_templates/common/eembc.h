/*
 * The EEMBC / MLPerf Tiny runner's text protocol, performance mode: device side (plain C99 in one header,
 * no HAL, no TFLM, no malloc, no printf). Specification and the implemented subset: docs/PROTOCOL.md.
 *
 * Commands end with '%' (mlcommons/tiny benchmark/api/internally_implemented.cpp); every reply ends with
 * "m-ready\r\n":
 *   name%          m-name-dut-[VENDOR]
 *   profile%       m-profile-[ULPMark for tinyML Firmware V0.0.1]  m-model-[MODEL]  (+ m-model-hash-[HEX])
 *   timestamp%     m-lap-us-N
 *   db load N%     m-[Expecting N bytes]            (N must equal the model input's bytes)
 *   db HEX%        ... m-load-done once N bytes arrived
 *   db print%      m-buffer-xx-xx-... (8 bytes a line)
 *   infer N W%     m-warmup-start-W m-warmup-done m-infer-start-N m-lap-us-T0 m-lap-us-T1 m-infer-done
 *                  then the results lines
 *   results%       m-results-[v0,v1,...] (dequantized outputs, %0.3f) and m-output-[HEX] (raw output bytes,
 *                  an ofa-mcu extension the official runner ignores: exact comparison with the host)
 * The db bytes are the input tensor's own bytes (int8, or int16 little-endian), as in the binary protocol.
 *
 * One header for the firmware (included by main.cc: EE_API defaults to static) and for the host tests and
 * the virtual board (pipeline/serial/eembc.py compiles it with -DEE_API= into a shared library).
 */
#ifndef OFA_MCU_EEMBC_H
#define OFA_MCU_EEMBC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef EE_API
#define EE_API static inline
#endif

#define EE_CMD_CAP 128u            /* the runner sends at most "db " + 62 hex digits */
#define EE_DTYPE_INT16 7u          /* = PROTO_DTYPE_INT16; anything else is int8 */
#define EE_FW_VERSION "ULPMark for tinyML Firmware V0.0.1"

typedef int (*ee_write_fn)(void *user, const uint8_t *data, size_t len);
/* Run one inference on input (input_len bytes); write output_len bytes of output. Return 0 on success. */
typedef int (*ee_invoke_fn)(void *user, const uint8_t *input, size_t input_len, uint8_t *output,
                            size_t output_len);
typedef uint64_t (*ee_micros_fn)(void *user);

typedef struct ee_device {
    /* configuration (ee_device_setup) */
    const char *vendor;            /* m-name-dut-[vendor] */
    const char *model;             /* m-model-[model]: the runner picks its dataset by it (kws01, ad01...) */
    const char *model_hash;        /* hex, for m-model-hash-[...] */
    ee_write_fn write;
    ee_invoke_fn invoke;
    ee_micros_fn micros;
    void *user;
    uint8_t *input_buf;
    size_t input_len;
    uint8_t *output_buf;
    size_t output_len;
    uint8_t output_dtype;
    float output_scale;
    int32_t output_zero_point;
    /* state */
    char cmd[EE_CMD_CAP + 1];
    size_t cmd_len;
    size_t load_size, load_pos;
    uint8_t have_output;
    uint32_t commands, errors;
} ee_device;

static void ee__put(ee_device *d, const char *s) { d->write(d->user, (const uint8_t *)s, strlen(s)); }

static void ee__put_u64(ee_device *d, uint64_t v) {
    char buf[21];
    size_t i = sizeof buf - 1;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + (v % 10u));
        v /= 10u;
    } while (v && i);
    ee__put(d, buf + i);
}

static void ee__line(ee_device *d, const char *a, const char *b, const char *c) {
    ee__put(d, a);
    if (b) ee__put(d, b);
    if (c) ee__put(d, c);
    ee__put(d, "\r\n");
}

static void ee__lap(ee_device *d) {
    ee__put(d, "m-lap-us-");
    ee__put_u64(d, d->micros ? d->micros(d->user) : 0u);
    ee__put(d, "\r\n");
}

static int ee__hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parse a non-negative decimal; -1 when empty or not a number. */
static long ee__atoi(const char *s) {
    long v = 0;
    if (!s || !*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
        if (v > 100000000L) return -1;
    }
    return v;
}

static int32_t ee__output_q(const ee_device *d, size_t i) {
    if (d->output_dtype == EE_DTYPE_INT16) {
        return (int16_t)(uint16_t)(d->output_buf[2 * i] | (d->output_buf[2 * i + 1] << 8));
    }
    return (int8_t)d->output_buf[i];
}

/* "%0.3f" of (q - zero_point) * scale, rounded half away from zero, without printf. */
static void ee__put_fixed3(ee_device *d, int32_t q, float scale, int32_t zp) {
    float v = (float)(q - zp) * scale * 1000.0f;
    int64_t m = (int64_t)(v < 0 ? v - 0.5f : v + 0.5f);
    char frac[5];
    if (m < 0) {
        ee__put(d, "-");
        m = -m;
    }
    ee__put_u64(d, (uint64_t)(m / 1000));
    frac[0] = '.';
    frac[1] = (char)('0' + (m / 100) % 10);
    frac[2] = (char)('0' + (m / 10) % 10);
    frac[3] = (char)('0' + m % 10);
    frac[4] = '\0';
    ee__put(d, frac);
}

static void ee__results(ee_device *d) {
    static const char hex[] = "0123456789abcdef";
    size_t n = d->output_dtype == EE_DTYPE_INT16 ? d->output_len / 2 : d->output_len;
    size_t i;
    if (!d->have_output) {
        ee__line(d, "e-[No results: run infer first]", 0, 0);
        return;
    }
    ee__put(d, "m-results-[");
    for (i = 0; i < n; i++) {
        if (i) ee__put(d, ",");
        ee__put_fixed3(d, ee__output_q(d, i), d->output_scale, d->output_zero_point);
    }
    ee__put(d, "]\r\nm-output-[");
    for (i = 0; i < d->output_len; i++) {
        char b[3];
        b[0] = hex[d->output_buf[i] >> 4];
        b[1] = hex[d->output_buf[i] & 15];
        b[2] = '\0';
        ee__put(d, b);
    }
    ee__put(d, "]\r\n");
}

static void ee__infer(ee_device *d, const char *n_arg, const char *w_arg) {
    long n = 1, w = 10, k; /* the reference firmware's defaults */
    if (n_arg) {
        n = ee__atoi(n_arg);
        if (n <= 0) {
            ee__line(d, "e-[Inference iterations must be >0]", 0, 0);
            return;
        }
        if (w_arg) {
            w = ee__atoi(w_arg);
            if (w < 0) {
                ee__line(d, "e-[Inference warmup must be >=0]", 0, 0);
                return;
            }
        }
    }
    if (d->load_pos != d->input_len) {
        ee__put(d, "e-[Input db has ");
        ee__put_u64(d, d->load_pos);
        ee__put(d, " bytes, expected ");
        ee__put_u64(d, d->input_len);
        ee__put(d, "]\r\n");
        return;
    }
    ee__put(d, "m-warmup-start-");
    ee__put_u64(d, (uint64_t)w);
    ee__put(d, "\r\n");
    for (k = 0; k < w; k++) {
        if (d->invoke(d->user, d->input_buf, d->input_len, d->output_buf, d->output_len) != 0) goto failed;
    }
    ee__line(d, "m-warmup-done", 0, 0);
    ee__put(d, "m-infer-start-");
    ee__put_u64(d, (uint64_t)n);
    ee__put(d, "\r\n");
    ee__lap(d);
    for (k = 0; k < n; k++) {
        if (d->invoke(d->user, d->input_buf, d->input_len, d->output_buf, d->output_len) != 0) goto failed;
    }
    ee__lap(d);
    ee__line(d, "m-infer-done", 0, 0);
    d->have_output = 1;
    ee__results(d);
    return;
failed:
    d->have_output = 0;
    d->errors++;
    ee__line(d, "e-[Inference failed]", 0, 0);
}

static void ee__db(ee_device *d, const char *sub, const char *arg) {
    if (!sub) {
        ee__line(d, "e-[Command 'db' requires a subcommand]", 0, 0);
    } else if (strcmp(sub, "load") == 0) {
        long n = ee__atoi(arg);
        if (!arg) {
            ee__line(d, "e-[Command 'db load' requires the # of bytes]", 0, 0);
        } else if (n <= 0) {
            ee__line(d, "e-[Command 'db load' must be >0 bytes]", 0, 0);
        } else if ((size_t)n != d->input_len) {
            ee__put(d, "e-[db load ");
            ee__put_u64(d, (uint64_t)n);
            ee__put(d, " differs from the model input's ");
            ee__put_u64(d, d->input_len);
            ee__put(d, " bytes]\r\n");
        } else {
            d->load_size = (size_t)n;
            d->load_pos = 0;
            d->have_output = 0;
            ee__put(d, "m-[Expecting ");
            ee__put_u64(d, (uint64_t)n);
            ee__put(d, " bytes]\r\n");
        }
    } else if (strcmp(sub, "print") == 0) {
        static const char hex[] = "0123456789abcdef";
        size_t i;
        for (i = 0; i < d->load_pos; i++) {
            char b[4];
            if (i % 8 == 0) ee__put(d, "m-buffer-");
            b[0] = hex[d->input_buf[i] >> 4];
            b[1] = hex[d->input_buf[i] & 15];
            b[2] = (i + 1) % 8 == 0 || i + 1 == d->load_pos ? '\r' : '-';
            b[3] = '\0';
            ee__put(d, b);
            if (b[2] == '\r') ee__put(d, "\n");
        }
    } else {
        size_t len = strlen(sub), i;
        if (len & 1u) {
            ee__line(d, "e-[Insufficent number of hex digits]", 0, 0);
            return;
        }
        for (i = 0; i < len; i += 2) {
            int hi = ee__hexval(sub[i]), lo = ee__hexval(sub[i + 1]);
            if (hi < 0 || lo < 0) {
                ee__line(d, "e-[Invalid hex digit]", 0, 0);
                return;
            }
            if (d->load_pos >= d->load_size) break; /* the reference disregards the remainder */
            d->input_buf[d->load_pos++] = (uint8_t)(hi << 4 | lo);
            if (d->load_pos == d->load_size) {
                ee__line(d, "m-load-done", 0, 0);
                break;
            }
        }
    }
}

static void ee__command(ee_device *d, char *cmd) {
    char *tok[4] = {0, 0, 0, 0};
    size_t n = 0;
    char *p = cmd;
    while (*p && n < 4) { /* split on spaces (strtok is not reentrant) */
        while (*p == ' ' || *p == '\r' || *p == '\n') *p++ = '\0';
        if (!*p) break;
        tok[n++] = p;
        while (*p && *p != ' ' && *p != '\r' && *p != '\n') p++;
    }
    while (*p) {
        if (*p == ' ' || *p == '\r' || *p == '\n') *p = '\0';
        p++;
    }
    d->commands++;
    if (!tok[0]) {
        /* an empty command: just the ready line */
    } else if (strcmp(tok[0], "name") == 0) {
        ee__line(d, "m-name-dut-[", d->vendor, "]");
    } else if (strcmp(tok[0], "profile") == 0) {
        ee__line(d, "m-profile-[", EE_FW_VERSION, "]");
        ee__line(d, "m-model-[", d->model, "]");
        if (d->model_hash) ee__line(d, "m-model-hash-[", d->model_hash, "]");
    } else if (strcmp(tok[0], "help") == 0) {
        ee__line(d, EE_FW_VERSION, 0, 0);
        ee__line(d, "name, profile, timestamp, db load N, db HEX, db print, infer N [W], results", 0, 0);
    } else if (strcmp(tok[0], "timestamp") == 0) {
        ee__lap(d);
    } else if (strcmp(tok[0], "db") == 0) {
        ee__db(d, tok[1], tok[2]);
    } else if (strcmp(tok[0], "infer") == 0) {
        ee__infer(d, tok[1], tok[1] ? tok[2] : 0);
    } else if (strcmp(tok[0], "results") == 0) {
        ee__results(d);
    } else {
        d->errors++;
        ee__line(d, "e-[Unknown command: ", tok[0], "]");
    }
    ee__put(d, "m-ready\r\n");
}

/* Configure the device; `banner` != 0 prints the reference firmware's boot lines. */
EE_API void ee_device_setup(ee_device *d, const char *vendor, const char *model, const char *model_hash,
                            ee_write_fn write, ee_invoke_fn invoke, ee_micros_fn micros, void *user,
                            uint8_t *input_buf, size_t input_len, uint8_t *output_buf, size_t output_len,
                            uint8_t output_dtype, float output_scale, int32_t output_zero_point, int banner) {
    memset(d, 0, sizeof *d);
    d->vendor = vendor;
    d->model = model;
    d->model_hash = model_hash;
    d->write = write;
    d->invoke = invoke;
    d->micros = micros;
    d->user = user;
    d->input_buf = input_buf;
    d->input_len = input_len;
    d->output_buf = output_buf;
    d->output_len = output_len;
    d->output_dtype = output_dtype;
    d->output_scale = output_scale;
    d->output_zero_point = output_zero_point;
    if (banner) {
        ee__put(d, "m-timestamp-mode-performance\r\nm-init-done\r\nm-ready\r\n");
    }
}

/* Feed received bytes; each '%' ends a command, whose replies go out through `write`. */
EE_API void ee_device_feed(ee_device *d, const uint8_t *data, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        char c = (char)data[i];
        if (c == '%') {
            d->cmd[d->cmd_len] = '\0';
            ee__command(d, d->cmd);
            d->cmd_len = 0;
        } else if (c != '\0') {
            if (d->cmd_len < EE_CMD_CAP) d->cmd[d->cmd_len++] = c; /* longer commands are cut, as upstream */
        }
    }
}

EE_API size_t ee_device_size(void) { return sizeof(ee_device); }

#endif /* OFA_MCU_EEMBC_H */
