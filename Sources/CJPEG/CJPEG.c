#include "CJPEG.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

struct fer_jpeg {
    struct jpeg_decompress_struct cinfo; /* first member: libjpeg's callbacks get &cinfo */
    struct jpeg_error_mgr error;
    jmp_buf jump;                        /* set by every call below before it enters libjpeg */
    char message[JMSG_LENGTH_MAX];
    int warning;
    int created;
};

/* error_exit: keep libjpeg's text, unwind to the calling shim function. */
static void fer_jpeg_error_exit(j_common_ptr cinfo) {
    fer_jpeg *decoder = (fer_jpeg *)cinfo;
    (*cinfo->err->format_message)(cinfo, decoder->message);
    longjmp(decoder->jump, 1);
}

/* emit_message: trace messages (level >= 0) are dropped; a warning (level -1: corrupt data, premature
   end) stops decoding as an error, as TurboJPEG's TJFLAG_STOPONWARNING does. */
static void fer_jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    fer_jpeg *decoder = (fer_jpeg *)cinfo;
    (*cinfo->err->format_message)(cinfo, decoder->message);
    decoder->warning = 1;
    longjmp(decoder->jump, 1);
}

/* output_message: nothing goes to stderr. */
static void fer_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

fer_jpeg *fer_jpeg_create(void) {
    fer_jpeg *decoder = calloc(1, sizeof(fer_jpeg));
    if (decoder == NULL) return NULL;
    decoder->cinfo.err = jpeg_std_error(&decoder->error);
    decoder->error.error_exit = fer_jpeg_error_exit;
    decoder->error.emit_message = fer_jpeg_emit_message;
    decoder->error.output_message = fer_jpeg_output_message;
    if (setjmp(decoder->jump)) {
        /* jpeg_create_decompress fails only when its memory manager cannot be allocated */
        free(decoder);
        return NULL;
    }
    jpeg_create_decompress(&decoder->cinfo);
    decoder->created = 1;
    return decoder;
}

void fer_jpeg_destroy(fer_jpeg *decoder) {
    if (decoder == NULL) return;
    if (decoder->created) jpeg_destroy_decompress(&decoder->cinfo);
    free(decoder);
}

int fer_jpeg_read_header(fer_jpeg *decoder, const unsigned char *data, size_t size, fer_jpeg_info *info) {
    if (setjmp(decoder->jump)) return -1;
    jpeg_mem_src(&decoder->cinfo, data, (unsigned long)size);
    /* require_image = TRUE: a tables-only stream is an error (JERR_NO_IMAGE), never JPEG_HEADER_TABLES_ONLY;
       the memory source never suspends. */
    if (jpeg_read_header(&decoder->cinfo, TRUE) != JPEG_HEADER_OK) {
        snprintf(decoder->message, sizeof decoder->message, "jpeg_read_header found no image");
        return -1;
    }
    info->width = decoder->cinfo.image_width;
    info->height = decoder->cinfo.image_height;
    info->components = decoder->cinfo.num_components;
    switch (decoder->cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: info->color_space = FER_JPEG_GRAYSCALE; break;
    case JCS_RGB: info->color_space = FER_JPEG_RGB; break;
    case JCS_YCbCr: info->color_space = FER_JPEG_YCBCR; break;
    case JCS_CMYK: info->color_space = FER_JPEG_CMYK; break;
    case JCS_YCCK: info->color_space = FER_JPEG_YCCK; break;
    default: info->color_space = FER_JPEG_UNKNOWN; break;
    }
    info->progressive = decoder->cinfo.progressive_mode ? 1 : 0;
    info->arithmetic = decoder->cinfo.arith_code ? 1 : 0;
    /* jdinput.c's rule for has_multiple_scans, from the first SOS that jpeg_read_header stopped at; the
       buffer is jdcoefct.c's whole_image arrays. */
    info->coefficient_bytes = 0;
    if (decoder->cinfo.progressive_mode || decoder->cinfo.comps_in_scan < decoder->cinfo.num_components) {
        for (int c = 0; c < decoder->cinfo.num_components; c++) {
            const jpeg_component_info *comp = &decoder->cinfo.comp_info[c];
            unsigned long long h = (unsigned long long)comp->h_samp_factor, v = (unsigned long long)comp->v_samp_factor;
            unsigned long long columns = (comp->width_in_blocks + h - 1) / h * h;
            unsigned long long rows = (comp->height_in_blocks + v - 1) / v * v;
            info->coefficient_bytes += columns * rows * sizeof(JBLOCK);
        }
    }
    return 0;
}

int fer_jpeg_start(fer_jpeg *decoder, int output) {
    if (setjmp(decoder->jump)) return -1;
    decoder->cinfo.out_color_space = output == FER_JPEG_CMYK ? JCS_CMYK : JCS_RGB;
    decoder->cinfo.dct_method = JDCT_ISLOW;
    decoder->cinfo.do_fancy_upsampling = TRUE;
    decoder->cinfo.scale_num = 1;
    decoder->cinfo.scale_denom = 1;
    decoder->cinfo.quantize_colors = FALSE;
    jpeg_start_decompress(&decoder->cinfo);
    int expected = output == FER_JPEG_CMYK ? 4 : 3;
    if (decoder->cinfo.output_components != expected ||
        decoder->cinfo.output_width != decoder->cinfo.image_width ||
        decoder->cinfo.output_height != decoder->cinfo.image_height) {
        snprintf(decoder->message, sizeof decoder->message,
                 "libjpeg gives %ux%u pixels of %d samples, expected %ux%u of %d",
                 (unsigned)decoder->cinfo.output_width, (unsigned)decoder->cinfo.output_height,
                 decoder->cinfo.output_components, (unsigned)decoder->cinfo.image_width,
                 (unsigned)decoder->cinfo.image_height, expected);
        return -1;
    }
    return 0;
}

int fer_jpeg_read_rows(fer_jpeg *decoder, unsigned char *out, size_t stride, unsigned max_rows,
                       unsigned *rows_read) {
    JSAMPROW rows[16];
    if (max_rows > 16) max_rows = 16;
    for (unsigned i = 0; i < max_rows; i++) rows[i] = out + i * stride;
    *rows_read = 0;
    if (setjmp(decoder->jump)) return -1;
    *rows_read = jpeg_read_scanlines(&decoder->cinfo, rows, max_rows);
    return 0;
}

int fer_jpeg_finish(fer_jpeg *decoder) {
    if (setjmp(decoder->jump)) return -1;
    jpeg_finish_decompress(&decoder->cinfo);
    return 0;
}

const char *fer_jpeg_message(const fer_jpeg *decoder) { return decoder->message; }

int fer_jpeg_failed_on_warning(const fer_jpeg *decoder) { return decoder->warning; }
