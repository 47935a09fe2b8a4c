/*
 * fer.h: C interface of the LFNSB facial-expression runtime (libfer).
 *
 * Load a model once, classify from any number of threads, free it when done:
 *
 *     fer_model *model = fer_model_load("weights/lfnsb7-seeded.pth");
 *     if (!model) { fprintf(stderr, "%s\n", fer_last_error()); return 1; }
 *     fer_result *result = NULL;
 *     if (fer_classify_encoded(model, png_bytes, png_length, &result) != FER_OK) { ... fer_last_error() ... }
 *     printf("%s %.3f\n", fer_result_label(result), fer_result_probability(result));
 *     fer_result_free(result);
 *     fer_model_free(model);
 *
 * Every failure is a status code plus a message from fer_last_error(), which belongs to the
 * calling thread and stays valid until that thread's next call. No call aborts the process on
 * bad input. A model may be used by several threads at once; a result belongs to its caller.
 * Each call running at once holds one image's working buffers (a few MB); between calls a model
 * keeps at most max(2, cores) of them and frees the rest.
 */
#ifndef FER_H
#define FER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fer_model fer_model;
typedef struct fer_result fer_result;
typedef struct fer_analyzer fer_analyzer;
typedef struct fer_analysis fer_analysis;

typedef enum fer_status {
    FER_OK = 0,
    FER_ERROR_INVALID_ARGUMENT = 1, /* a NULL pointer, a size of zero, a stride too small */
    FER_ERROR_MODEL = 2,            /* the model file could not be read or does not fit */
    FER_ERROR_IMAGE = 3,            /* the encoded image could not be decoded */
    FER_ERROR_INFERENCE = 4         /* the forward pass refused its input, or its outputs were not finite */
} fer_status;

/* Loads a model file: a PyTorch checkpoint in any form the importer reads, or a fused
 * .safetensors. Returns NULL on failure (see fer_last_error()). */
fer_model *fer_model_load(const char *path);
/* fer_model_load with options: `labels` names the classes (NULL: RAF-DB for 7 classes, AffectNet-8
 * for 8, "class N" otherwise; or "rafdb", "affectnet7", "affectnet8", or the path of a UTF-8 file
 * with one name per line, as fer-infer --labels), `threads` the threads each classification runs on
 * (0: one; at most 256). A label choice that does not fit the model fails the load. */
fer_model *fer_model_open(const char *path, const char *labels, int32_t threads);
/* Loads a model from the bytes of a model file in memory (copied). */
fer_model *fer_model_load_bytes(const uint8_t *bytes, size_t length);
void fer_model_free(fer_model *model);

/* Number of classes (classifiers) or 0 for embedders; output width (classes or embedding size).
 * fer_model_classes is the same as fer_model_class_count, kept for existing callers. */
int32_t fer_model_class_count(const fer_model *model);
int32_t fer_model_classes(const fer_model *model);
int32_t fer_model_output_width(const fer_model *model);
/* The name of class `index` (0-based, as fer_result_index), NULL out of range or for embedders.
 * Valid until fer_model_free. */
const char *fer_model_class_name(const fer_model *model, int32_t index);

/* Classifies 8-bit RGB pixels: height rows of width * 3 bytes, rows `stride` bytes apart. Any size;
 * resized to 112x112 as the authors' evaluation does. */
fer_status fer_classify_rgb(fer_model *model, const uint8_t *pixels, int32_t width, int32_t height,
                            int32_t stride, fer_result **result);
/* Decodes PNG or JPEG bytes and classifies them. A length of 0 is FER_ERROR_INVALID_ARGUMENT;
 * bytes that are not a whole PNG or JPEG image are FER_ERROR_IMAGE. */
fer_status fer_classify_encoded(fer_model *model, const uint8_t *bytes, size_t length, fer_result **result);

/* Top label (classifiers; NULL for embedders), its class index (-1 for embedders) and probability. */
const char *fer_result_label(const fer_result *result);
int32_t fer_result_index(const fer_result *result);
float fer_result_probability(const fer_result *result);
/* `fer_result_width` values each: probabilities and logits (classifiers) or the embedding (embedders);
 * NULL where not applicable. Valid until fer_result_free. */
int32_t fer_result_width(const fer_result *result);
const float *fer_result_probabilities(const fer_result *result);
const float *fer_result_logits(const fer_result *result);
const float *fer_result_embedding(const fer_result *result);
void fer_result_free(fer_result *result);

/* ---- Whole photos: find every face (RetinaFace), align it on its five landmarks, classify it ----
 *
 *     fer_analyzer *analyzer = fer_analyzer_new(model, NULL, 0, 0, 0);   // default detector and options
 *     fer_analysis *analysis = NULL;
 *     if (fer_analyze_encoded(analyzer, jpeg_bytes, jpeg_length, &analysis) != FER_OK) { ... fer_last_error() ... }
 *     for (int32_t i = 0; i < fer_analysis_face_count(analysis); i++) {
 *         const float *box = fer_analysis_face_box(analysis, i);
 *         const fer_result *r = fer_analysis_face_result(analysis, i);
 *         printf("%.0f,%.0f,%.0f,%.0f %s\n", box[0], box[1], box[2], box[3], fer_result_label(r));
 *     }
 *     fer_analysis_free(analysis);
 *     fer_analyzer_free(analyzer);
 */

/* An analyzer: the face detector at `detector_path` (NULL: $FER_DETECTOR, else
 * weights/retinaface-mobilenet0.25.pth in the working directory or beside the library's package)
 * and `model` for the faces. `detect_size` is the long side the photo is shrunk to for detection
 * (0: 640), `threshold` the minimum face score (0: 0.6; otherwise in (0, 1)), `max_faces` the most
 * faces reported per photo, best first (0: 100). The analyzer keeps what it needs of `model`, which may
 * be freed first. Usable from several threads at once. NULL on failure (see fer_last_error()). */
fer_analyzer *fer_analyzer_new(fer_model *model, const char *detector_path, int32_t detect_size, float threshold,
                               int32_t max_faces);
void fer_analyzer_free(fer_analyzer *analyzer);
/* The largest photo fer_analyze_encoded decodes, as width * height, checked from the file's header
 * before any pixel memory is allocated (a larger one is FER_ERROR_IMAGE, the message naming both
 * numbers); 0 for no limit. The default is 89,478,485, PIL's. Whatever the limit, a progressive JPEG
 * whose coefficient buffer would pass 256 MiB, or an image this process could not allocate, is refused
 * the same way. FER_ERROR_INVALID_ARGUMENT for a NULL analyzer or a negative limit. May be called while
 * other threads analyse: each call uses the limit in force when it starts. */
fer_status fer_analyzer_set_max_pixels(fer_analyzer *analyzer, int64_t max_pixels);
/* Finds, aligns and classifies every face of a photo given as 8-bit RGB pixels (as fer_classify_rgb)
 * or PNG/JPEG bytes (as fer_classify_encoded; same error codes; decoded as OpenCV's imread reads them,
 * which differs from PIL's reading only for 16-bit grey PNG). A photo without a face is FER_OK with
 * a face count of 0. */
fer_status fer_analyze_rgb(fer_analyzer *analyzer, const uint8_t *pixels, int32_t width, int32_t height,
                           int32_t stride, fer_analysis **analysis);
fer_status fer_analyze_encoded(fer_analyzer *analyzer, const uint8_t *bytes, size_t length, fer_analysis **analysis);
/* Faces found, in descending score order; 1 when more than max_faces were above the threshold. */
int32_t fer_analysis_face_count(const fer_analysis *analysis);
int32_t fer_analysis_truncated(const fer_analysis *analysis);
/* Face `face`, an array index from 0 (the face fer-infer, fer-serve and error messages number
 * `face + 1`): its box x1, y1, x2, y2 (4 values) and five landmarks x, y (10 values: eyes,
 * nose, mouth corners) in the photo's pixels, its score, its aligned 112x112 RGB crop (112 * 112 * 3
 * bytes) and its classification (read with the fer_result_ calls; do not free it). NULL, or a score of
 * 0, for a face index out of range. Valid until fer_analysis_free. */
const float *fer_analysis_face_box(const fer_analysis *analysis, int32_t face);
const float *fer_analysis_face_landmarks(const fer_analysis *analysis, int32_t face);
float fer_analysis_face_score(const fer_analysis *analysis, int32_t face);
const uint8_t *fer_analysis_face_crop(const fer_analysis *analysis, int32_t face);
const fer_result *fer_analysis_face_result(const fer_analysis *analysis, int32_t face);
void fer_analysis_free(fer_analysis *analysis);

/* The calling thread's last error message, or "" when its last call succeeded. */
const char *fer_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
