// A C client of libfer: loads a model, classifies encoded and raw images, checks every error path,
// and classifies from 8 threads at once, comparing with the sequential results; fer_c_abi_burst
// measures what a burst of concurrent callers leaves allocated.
#include "CABICheck.h"
#include "fer.h"
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(n, ...) do { snprintf(message, message_size, __VA_ARGS__); return n; } while (0)

struct job { pthread_barrier_t *barrier; fer_model *model; const unsigned char *png; size_t length; float logits[8]; int status; };

static void *classify_job(void *arg) {
    struct job *job = arg;
    if (job->barrier) pthread_barrier_wait(job->barrier);  // all threads call at once
    for (int round = 0; round < 5; round++) {
        fer_result *result = NULL;
        job->status = fer_classify_encoded(job->model, job->png, job->length, &result);
        if (job->status != FER_OK) return NULL;
        memcpy(job->logits, fer_result_logits(result), sizeof(float) * 7);
        fer_result_free(result);
    }
    return NULL;
}

int fer_c_abi_check(const char *weights, const unsigned char *png, size_t png_length,
                    const unsigned char *rgb, int width, int height,
                    float *logits, float *rgb_logits, char *message, size_t message_size) {
    if (fer_model_load("/no/such/model.pth") != NULL) FAIL(1, "loading a missing file succeeded");
    if (strstr(fer_last_error(), "/no/such/model.pth") == NULL) FAIL(2, "error does not name the file: %s", fer_last_error());

    fer_model *model = fer_model_load(weights);
    if (!model) FAIL(3, "load failed: %s", fer_last_error());
    if (fer_model_classes(model) != 7 || fer_model_output_width(model) != 7) FAIL(4, "wrong class count");

    fer_result *result = NULL;
    if (fer_classify_encoded(model, png, png_length, &result) != FER_OK) FAIL(5, "classify failed: %s", fer_last_error());
    if (strcmp(fer_last_error(), "") != 0) FAIL(6, "error left after success: %s", fer_last_error());
    if (fer_result_width(result) != 7 || !fer_result_label(result) || fer_result_embedding(result) != NULL) FAIL(7, "result shape");
    const float *probabilities = fer_result_probabilities(result);
    int top = fer_result_index(result);
    for (int i = 0; i < 7; i++) if (probabilities[i] > probabilities[top]) FAIL(8, "index is not the top class");
    if (fer_result_probability(result) != probabilities[top]) FAIL(9, "probability mismatch");
    memcpy(logits, fer_result_logits(result), sizeof(float) * 7);
    fer_result_free(result);

    // The same pixels as a raw buffer whose rows are padded by 5 bytes.
    int stride = width * 3 + 5;
    unsigned char *padded = calloc((size_t)stride * height, 1);
    for (int y = 0; y < height; y++) memcpy(padded + (size_t)y * stride, rgb + (size_t)y * width * 3, (size_t)width * 3);
    int status = fer_classify_rgb(model, padded, width, height, stride, &result);
    free(padded);
    if (status != FER_OK) FAIL(10, "classify_rgb failed: %s", fer_last_error());
    memcpy(rgb_logits, fer_result_logits(result), sizeof(float) * 7);
    fer_result_free(result);

    // Every failure is a code and a message; nothing aborts.
    result = (fer_result *)0x1;
    if (fer_classify_encoded(model, (const unsigned char *)"garbage", 7, &result) != FER_ERROR_IMAGE) FAIL(11, "garbage accepted");
    if (result != NULL) FAIL(12, "result not cleared on failure");
    if (strstr(fer_last_error(), "not a PNG or JPEG") == NULL) FAIL(13, "garbage message: %s", fer_last_error());
    if (fer_classify_encoded(model, png, png_length / 2, &result) != FER_ERROR_IMAGE) FAIL(14, "truncated image accepted");
    if (fer_classify_encoded(NULL, png, png_length, &result) != FER_ERROR_INVALID_ARGUMENT) FAIL(15, "NULL model accepted");
    // fer.h: a size of zero is an invalid argument, not an image error.
    result = (fer_result *)0x1;
    status = fer_classify_encoded(model, png, 0, &result);
    if (status != FER_ERROR_INVALID_ARGUMENT) FAIL(21, "size 0 gave status %d, not FER_ERROR_INVALID_ARGUMENT: %s", status, fer_last_error());
    if (result != NULL) FAIL(22, "result not cleared on a size of 0");
    if (strstr(fer_last_error(), "fer_classify_encoded: length is 0") == NULL) FAIL(23, "size 0 message: %s", fer_last_error());
    if (fer_classify_rgb(model, rgb, width, height, width * 3 - 1, &result) != FER_ERROR_INVALID_ARGUMENT) FAIL(16, "short stride accepted");
    if (fer_classify_rgb(model, rgb, 0, height, 0, &result) != FER_ERROR_INVALID_ARGUMENT) FAIL(17, "empty image accepted");
    if (fer_model_load_bytes((const unsigned char *)"PK\x03\x04", 4) != NULL) FAIL(18, "broken model bytes accepted");

    // Eight threads at once give the sequential result exactly.
    pthread_t threads[8];
    struct job jobs[8];
    for (int t = 0; t < 8; t++) {
        jobs[t] = (struct job){NULL, model, png, png_length, {0}, -1};
        pthread_create(&threads[t], NULL, classify_job, &jobs[t]);
    }
    for (int t = 0; t < 8; t++) pthread_join(threads[t], NULL);
    for (int t = 0; t < 8; t++) {
        if (jobs[t].status != FER_OK) FAIL(19, "thread %d failed", t);
        if (memcmp(jobs[t].logits, logits, sizeof(float) * 7) != 0) FAIL(20, "thread %d differs from the sequential result", t);
    }
    fer_model_free(model);
    fer_model_free(NULL);
    fer_result_free(NULL);
    return 0;
}

// Bytes the C heap has handed out and not had back (every arena, mmapped blocks included).
static size_t heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
}

// Resident bytes of the process (0 where /proc is not there).
static size_t resident(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long pages = 0, rss = 0;
    int read = fscanf(f, "%lu %lu", &pages, &rss);
    fclose(f);
    return read == 2 ? (size_t)rss * 4096 : 0;
}

int fer_c_abi_burst(const char *weights, const unsigned char *png, size_t png_length, int thread_count,
                    size_t *heap_warm, size_t *heap_after, size_t *rss_warm, size_t *rss_after,
                    char *message, size_t message_size) {
    fer_model *model = fer_model_load(weights);
    if (!model) FAIL(1, "load failed: %s", fer_last_error());
    fer_result *result = NULL;
    if (fer_classify_encoded(model, png, png_length, &result) != FER_OK) {
        snprintf(message, message_size, "classify failed: %s", fer_last_error());
        fer_model_free(model);
        return 2;
    }
    float logits[8];
    memcpy(logits, fer_result_logits(result), sizeof(float) * 7);
    fer_result_free(result);
    *heap_warm = heap_in_use();
    *rss_warm = resident();

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)thread_count);
    pthread_t *threads = calloc((size_t)thread_count, sizeof(pthread_t));
    struct job *jobs = calloc((size_t)thread_count, sizeof(struct job));
    for (int t = 0; t < thread_count; t++) {
        jobs[t] = (struct job){&barrier, model, png, png_length, {0}, -1};
        pthread_create(&threads[t], NULL, classify_job, &jobs[t]);
    }
    for (int t = 0; t < thread_count; t++) pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&barrier);
    int failed = -1;
    for (int t = 0; t < thread_count && failed < 0; t++) {
        if (jobs[t].status != FER_OK || memcmp(jobs[t].logits, logits, sizeof(float) * 7) != 0) failed = t;
    }
    free(threads);
    free(jobs);
    *heap_after = heap_in_use();
    *rss_after = resident();
    fer_model_free(model);
    if (failed >= 0) FAIL(3, "thread %d failed or differs from the sequential result", failed);
    return 0;
}

struct analyze_job { fer_analyzer *analyzer; const unsigned char *photo; size_t length; int faces; float first_box[4]; int status; };

static void *analyze_job(void *arg) {
    struct analyze_job *job = arg;
    fer_analysis *analysis = NULL;
    job->status = fer_analyze_encoded(job->analyzer, job->photo, job->length, &analysis);
    if (job->status != FER_OK) return NULL;
    job->faces = fer_analysis_face_count(analysis);
    if (job->faces > 0) memcpy(job->first_box, fer_analysis_face_box(analysis, 0), sizeof(float) * 4);
    fer_analysis_free(analysis);
    return NULL;
}

int fer_c_abi_analyze(const char *weights, const char *detector, const unsigned char *photo, size_t length,
                      const unsigned char *rgb, int width, int height, int capacity, int *faces,
                      float *boxes, float *landmarks, float *scores, int *classes, unsigned char *first_crop,
                      char *message, size_t message_size) {
    fer_model *model = fer_model_load(weights);
    if (!model) FAIL(1, "load failed: %s", fer_last_error());
    // Bad options and a missing detector are refused with a message; nothing is made.
    if (fer_analyzer_new(NULL, detector, 0, 0, 0) != NULL) FAIL(2, "NULL model accepted");
    if (fer_analyzer_new(model, detector, 8, 0, 0) != NULL) FAIL(3, "detect size 8 accepted");
    if (strstr(fer_last_error(), "detect size 8") == NULL) FAIL(4, "detect size message: %s", fer_last_error());
    if (fer_analyzer_new(model, detector, 0, 1.5f, 0) != NULL) FAIL(5, "threshold 1.5 accepted");
    if (fer_analyzer_new(model, "/no/such/detector.pth", 0, 0, 0) != NULL) FAIL(6, "missing detector accepted");
    if (strstr(fer_last_error(), "/no/such/detector.pth") == NULL) FAIL(7, "missing detector message: %s", fer_last_error());
    if (fer_analyzer_new(model, weights, 0, 0, 0) != NULL) FAIL(8, "a classifier accepted as the detector");

    fer_analyzer *analyzer = fer_analyzer_new(model, detector, 0, 0, 0);
    if (!analyzer) FAIL(9, "analyzer failed: %s", fer_last_error());
    fer_model_free(model);  // the analyzer keeps what it needs

    fer_analysis *analysis = NULL;
    if (fer_analyze_encoded(analyzer, photo, length, &analysis) != FER_OK) FAIL(10, "analyze failed: %s", fer_last_error());
    if (strcmp(fer_last_error(), "") != 0) FAIL(11, "error left after success: %s", fer_last_error());
    int n = fer_analysis_face_count(analysis);
    *faces = n;
    if (fer_analysis_truncated(analysis) != 0) FAIL(12, "truncated with the default max faces");
    for (int i = 0; i < n && i < capacity; i++) {
        memcpy(boxes + 4 * i, fer_analysis_face_box(analysis, i), sizeof(float) * 4);
        memcpy(landmarks + 10 * i, fer_analysis_face_landmarks(analysis, i), sizeof(float) * 10);
        scores[i] = fer_analysis_face_score(analysis, i);
        const fer_result *r = fer_analysis_face_result(analysis, i);
        if (!r || !fer_result_label(r)) FAIL(13, "face %d has no classification", i);
        classes[i] = fer_result_index(r);
    }
    if (n > 0) memcpy(first_crop, fer_analysis_face_crop(analysis, 0), 112 * 112 * 3);
    if (fer_analysis_face_box(analysis, n) != NULL || fer_analysis_face_box(analysis, -1) != NULL) FAIL(14, "face index out of range answered");
    if (fer_analysis_face_result(analysis, n) != NULL || fer_analysis_face_crop(analysis, n) != NULL) FAIL(15, "face index out of range answered");
    if (fer_analysis_face_score(analysis, n) != 0 || fer_analysis_face_landmarks(analysis, n) != NULL) FAIL(16, "face index out of range answered");
    fer_analysis_free(analysis);

    // The same pixels, raw with padded rows: the same faces.
    int stride = width * 3 + 7;
    unsigned char *padded = calloc((size_t)stride * height, 1);
    for (int y = 0; y < height; y++) memcpy(padded + (size_t)y * stride, rgb + (size_t)y * width * 3, (size_t)width * 3);
    int status = fer_analyze_rgb(analyzer, padded, width, height, stride, &analysis);
    free(padded);
    if (status != FER_OK) FAIL(17, "analyze_rgb failed: %s", fer_last_error());
    if (fer_analysis_face_count(analysis) != n) FAIL(18, "analyze_rgb found %d faces, encoded %d", fer_analysis_face_count(analysis), n);
    if (n > 0 && memcmp(fer_analysis_face_box(analysis, 0), boxes, sizeof(float) * 4) != 0) FAIL(19, "analyze_rgb box differs");
    fer_analysis_free(analysis);

    // Error paths: codes and messages, the output cleared.
    analysis = (fer_analysis *)0x1;
    if (fer_analyze_encoded(analyzer, (const unsigned char *)"garbage", 7, &analysis) != FER_ERROR_IMAGE) FAIL(20, "garbage accepted");
    if (analysis != NULL) FAIL(21, "analysis not cleared on failure");
    if (strstr(fer_last_error(), "not a PNG or JPEG") == NULL) FAIL(22, "garbage message: %s", fer_last_error());
    if (fer_analyze_encoded(analyzer, photo, length / 2, &analysis) != FER_ERROR_IMAGE) FAIL(23, "truncated photo accepted");
    if (fer_analyze_encoded(analyzer, photo, 0, &analysis) != FER_ERROR_INVALID_ARGUMENT) FAIL(24, "length 0 accepted");
    if (fer_analyze_encoded(NULL, photo, length, &analysis) != FER_ERROR_INVALID_ARGUMENT) FAIL(25, "NULL analyzer accepted");
    if (fer_analyze_rgb(analyzer, rgb, width, height, width * 3 - 1, &analysis) != FER_ERROR_INVALID_ARGUMENT) FAIL(26, "short stride accepted");
    if (fer_analyze_rgb(analyzer, rgb, 0, height, 0, &analysis) != FER_ERROR_INVALID_ARGUMENT) FAIL(27, "empty image accepted");

    // The pixel limit: the photo's own pixel count passes, one less refuses it naming both, 0 lifts it.
    int64_t pixels = (int64_t)width * height;
    if (fer_analyzer_set_max_pixels(analyzer, pixels - 1) != FER_OK) FAIL(40, "set_max_pixels failed: %s", fer_last_error());
    if (fer_analyze_encoded(analyzer, photo, length, &analysis) != FER_ERROR_IMAGE) FAIL(41, "photo over the pixel limit accepted");
    char expected[64];
    snprintf(expected, sizeof expected, "over the limit of %lld", (long long)(pixels - 1));
    if (strstr(fer_last_error(), expected) == NULL) FAIL(42, "pixel limit message: %s", fer_last_error());
    if (fer_analyzer_set_max_pixels(analyzer, pixels) != FER_OK) FAIL(43, "set_max_pixels failed: %s", fer_last_error());
    if (fer_analyze_encoded(analyzer, photo, length, &analysis) != FER_OK) FAIL(44, "photo at the pixel limit refused: %s", fer_last_error());
    fer_analysis_free(analysis);
    if (fer_analyzer_set_max_pixels(analyzer, 1) != FER_OK || fer_analyzer_set_max_pixels(analyzer, 0) != FER_OK) FAIL(45, "set_max_pixels 0 failed");
    if (fer_analyze_encoded(analyzer, photo, length, &analysis) != FER_OK) FAIL(46, "photo without a pixel limit refused: %s", fer_last_error());
    fer_analysis_free(analysis);
    if (fer_analyzer_set_max_pixels(analyzer, -1) != FER_ERROR_INVALID_ARGUMENT) FAIL(47, "negative limit accepted");
    if (strstr(fer_last_error(), "negative") == NULL) FAIL(48, "negative limit message: %s", fer_last_error());
    if (fer_analyzer_set_max_pixels(NULL, 5) != FER_ERROR_INVALID_ARGUMENT) FAIL(49, "NULL analyzer accepted");

    // Four threads at once find the same faces.
    pthread_t threads[4];
    struct analyze_job jobs[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (struct analyze_job){analyzer, photo, length, -1, {0}, -1};
        pthread_create(&threads[t], NULL, analyze_job, &jobs[t]);
    }
    for (int t = 0; t < 4; t++) pthread_join(threads[t], NULL);
    for (int t = 0; t < 4; t++) {
        if (jobs[t].status != FER_OK || jobs[t].faces != n) FAIL(28, "thread %d failed or found %d faces", t, jobs[t].faces);
        if (n > 0 && memcmp(jobs[t].first_box, boxes, sizeof(float) * 4) != 0) FAIL(29, "thread %d differs", t);
    }
    fer_analyzer_free(analyzer);
    fer_analyzer_free(NULL);
    fer_analysis_free(NULL);
    return 0;
}

int fer_c_abi_classes(const char *weights, const char *names_file, const unsigned char *png, size_t png_length,
                      char *message, size_t message_size) {
    static const char *rafdb[] = {"Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"};
    static const char *affectnet7[] = {"Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger"};
    // The default names, and a result's label is the name of its index.
    fer_model *model = fer_model_open(weights, NULL, 0);
    if (!model) FAIL(1, "open failed: %s", fer_last_error());
    if (fer_model_class_count(model) != 7 || fer_model_classes(model) != 7) FAIL(2, "class count %d", fer_model_class_count(model));
    for (int i = 0; i < 7; i++) {
        const char *name = fer_model_class_name(model, i);
        if (!name || strcmp(name, rafdb[i]) != 0) FAIL(3, "class %d is %s, not %s", i, name ? name : "NULL", rafdb[i]);
    }
    if (fer_model_class_name(model, 7) != NULL || fer_model_class_name(model, -1) != NULL || fer_model_class_name(NULL, 0) != NULL)
        FAIL(4, "a class index out of range answered");
    fer_result *result = NULL;
    if (fer_classify_encoded(model, png, png_length, &result) != FER_OK) FAIL(5, "classify failed: %s", fer_last_error());
    if (strcmp(fer_result_label(result), fer_model_class_name(model, fer_result_index(result))) != 0) FAIL(6, "label is not its index's name");
    float one_thread[7];
    memcpy(one_thread, fer_result_logits(result), sizeof one_thread);
    fer_result_free(result);
    fer_model_free(model);

    // A label set by name, and the same logits on two threads.
    model = fer_model_open(weights, "AffectNet7", 2);
    if (!model) FAIL(7, "open with affectnet7 failed: %s", fer_last_error());
    for (int i = 0; i < 7; i++) if (strcmp(fer_model_class_name(model, i), affectnet7[i]) != 0) FAIL(8, "affectnet7 class %d", i);
    if (fer_classify_encoded(model, png, png_length, &result) != FER_OK) FAIL(9, "classify failed: %s", fer_last_error());
    if (strcmp(fer_result_label(result), affectnet7[fer_result_index(result)]) != 0) FAIL(10, "label not from the chosen set");
    for (int i = 0; i < 7; i++) if (fabsf(fer_result_logits(result)[i] - one_thread[i]) > 1e-4f) FAIL(11, "two threads give other logits");
    fer_result_free(result);
    fer_model_free(model);

    // A file of names, one per line.
    model = fer_model_open(weights, names_file, 1);
    if (!model) FAIL(12, "open with a names file failed: %s", fer_last_error());
    if (strcmp(fer_model_class_name(model, 0), "a") != 0 || strcmp(fer_model_class_name(model, 6), "g") != 0) FAIL(13, "names file");
    fer_model_free(model);

    // Choices that do not fit, and thread counts out of range: NULL with a message naming them.
    if (fer_model_open(weights, "affectnet8", 1) != NULL) FAIL(14, "8 names for 7 classes accepted");
    if (strstr(fer_last_error(), "affectnet8 has 8 names but the model has 7 classes") == NULL) FAIL(15, "message: %s", fer_last_error());
    if (fer_model_open(weights, "nosuchset", 1) != NULL) FAIL(16, "an unknown label set accepted");
    if (strstr(fer_last_error(), "'nosuchset' is neither a label set") == NULL) FAIL(17, "message: %s", fer_last_error());
    if (fer_model_open(weights, NULL, -1) != NULL || strstr(fer_last_error(), "threads is -1") == NULL) FAIL(18, "threads -1: %s", fer_last_error());
    if (fer_model_open(weights, NULL, 257) != NULL || strstr(fer_last_error(), "threads is 257") == NULL) FAIL(19, "threads 257: %s", fer_last_error());
    model = fer_model_open(weights, NULL, 256);
    if (!model) FAIL(20, "256 threads refused: %s", fer_last_error());
    fer_model_free(model);
    if (fer_model_open(NULL, NULL, 1) != NULL) FAIL(21, "NULL path accepted");
    return 0;
}
