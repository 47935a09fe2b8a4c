#ifndef FER_CJPEG_H
#define FER_CJPEG_H
/*
 * A small C shim over libjpeg-turbo's libjpeg API (jpeglib.h), the API PIL uses, for FERImage.
 *
 * libjpeg reports errors by calling error_exit, which must not return; the usual answer is
 * setjmp/longjmp, which Swift cannot do. Every function here that calls into libjpeg sets a jump point
 * first, so an error (or a warning: corrupt or missing data is never decoded silently) unwinds to that
 * function, which returns -1 with the message in fer_jpeg_message(). Nothing longjmps across Swift frames.
 * After -1 the decoder may only be asked for its message and destroyed.
 *
 * Decoding always uses the accurate integer IDCT (JDCT_ISLOW) and fancy upsampling, libjpeg's defaults
 * and PIL's, for every chroma sampling libjpeg accepts.
 */
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// One decompression: libjpeg's state, its error manager and the jump point.
typedef struct fer_jpeg fer_jpeg;

/// Colour spaces (libjpeg's J_COLOR_SPACE values for these five).
enum {
    FER_JPEG_UNKNOWN = 0,
    FER_JPEG_GRAYSCALE = 1,
    FER_JPEG_RGB = 2,
    FER_JPEG_YCBCR = 3,
    FER_JPEG_CMYK = 4,
    FER_JPEG_YCCK = 5,
};

/// What jpeg_read_header learnt.
typedef struct {
    unsigned width;        /* image_width */
    unsigned height;       /* image_height */
    int components;        /* num_components */
    int color_space;       /* jpeg_color_space, FER_JPEG_* (libjpeg's guess from JFIF/Adobe markers and IDs) */
    int progressive;       /* progressive_mode */
    int arithmetic;        /* arith_code */
    /* Bytes of the whole-image coefficient buffer fer_jpeg_start will have libjpeg allocate: 0 for a
       sequential file whose first scan holds every component; otherwise (progressive, or components in
       separate scans) 128 bytes per 8x8 block of every component, block counts rounded up to the
       component's sampling factors as libjpeg's coefficient controller does. */
    unsigned long long coefficient_bytes;
} fer_jpeg_info;

/// A new decoder, or NULL when out of memory.
fer_jpeg *fer_jpeg_create(void);
/// Frees the decoder and everything libjpeg allocated for it. NULL is ignored.
void fer_jpeg_destroy(fer_jpeg *decoder);

/// Reads the markers up to the first scan from `size` bytes at `data`, which must stay valid and
/// unchanged until the decoder is destroyed. 0, or -1 on error.
int fer_jpeg_read_header(fer_jpeg *decoder, const unsigned char *data, size_t size, fer_jpeg_info *info);

/// Starts decompression to `output` (FER_JPEG_RGB: 3 samples a pixel, from grey, RGB or YCbCr; or
/// FER_JPEG_CMYK: 4, from CMYK or YCCK). A progressive or multi-scan file is read whole here.
/// 0, or -1 on error (including libjpeg refusing the conversion or the sampling factors).
int fer_jpeg_start(fer_jpeg *decoder, int output);

/// Decodes up to `max_rows` (at most 16) of the next output rows into `out`, rows `stride` bytes apart;
/// `*rows_read` says how many. 0, or -1 on error.
int fer_jpeg_read_rows(fer_jpeg *decoder, unsigned char *out, size_t stride, unsigned max_rows,
                       unsigned *rows_read);

/// Reads the rest of the data through the end-of-image marker. 0, or -1 on error.
int fer_jpeg_finish(fer_jpeg *decoder);

/// The last error or warning, as libjpeg words it ("" when none).
const char *fer_jpeg_message(const fer_jpeg *decoder);
/// 1 when the last failure was a libjpeg warning (premature end, corrupt data) stopped as an error.
int fer_jpeg_failed_on_warning(const fer_jpeg *decoder);

#ifdef __cplusplus
}
#endif
#endif
