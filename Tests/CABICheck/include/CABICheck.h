#ifndef FER_CABI_CHECK_H
#define FER_CABI_CHECK_H
#include <stddef.h>
/// A C program's use of libfer, run inside the test process (see check.c). Fills `logits` (7 values)
/// for `png` classified through fer_classify_encoded and `rgb_logits` for the same pixels through
/// fer_classify_rgb with padded rows, and returns 0, or the number of the first failed check with a
/// message in `message`.
int fer_c_abi_check(const char *weights, const unsigned char *png, size_t png_length,
                    const unsigned char *rgb, int width, int height,
                    float *logits, float *rgb_logits, char *message, size_t message_size);
/// Loads `weights`, classifies `png` once, notes the bytes the C heap holds and the resident bytes
/// (`heap_warm`, `rss_warm`), then classifies it from `thread_count` threads that all start
/// together (5 times each) and notes both again (`heap_after`, `rss_after`) before freeing the
/// model. Returns 0, or the number of the first failed check with a message in `message`.
int fer_c_abi_burst(const char *weights, const unsigned char *png, size_t png_length, int thread_count,
                    size_t *heap_warm, size_t *heap_after, size_t *rss_warm, size_t *rss_after,
                    char *message, size_t message_size);
/// The whole-photo calls: an analyzer over `weights` and `detector` analyses `photo` (encoded) and the
/// same photo as raw `rgb` pixels; fills `*faces` and, for up to `capacity` faces, their boxes (4
/// values each), landmarks (10), scores and top class indices, and the first face's crop (112*112*3
/// bytes); checks every error path and 4 concurrent callers. Returns 0, or the number of the first
/// failed check with a message in `message`.
int fer_c_abi_analyze(const char *weights, const char *detector, const unsigned char *photo, size_t length,
                      const unsigned char *rgb, int width, int height, int capacity, int *faces,
                      float *boxes, float *landmarks, float *scores, int *classes, unsigned char *first_crop,
                      char *message, size_t message_size);
/// Class names and load options: fer_model_open with the default labels, a label set by name (on 2
/// threads: the same logits), a names file (`names_file`, "a".."g"), and the choices and thread counts
/// it refuses; fer_model_class_count / fer_model_class_name in and out of range. Returns 0, or the
/// number of the first failed check with a message in `message`.
int fer_c_abi_classes(const char *weights, const char *names_file, const unsigned char *png, size_t png_length,
                      char *message, size_t message_size);
#endif
