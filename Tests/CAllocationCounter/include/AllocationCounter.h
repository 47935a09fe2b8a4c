#ifndef FER_ALLOCATION_COUNTER_H
#define FER_ALLOCATION_COUNTER_H
/// Test support: counts calls to malloc, calloc, realloc, posix_memalign and aligned_alloc made
/// anywhere in the test process between start and stop. The definitions in AllocationCounter.c
/// interpose glibc's (the executable's symbols win) and forward to glibc's __libc_* entry points.
void fer_allocation_counting_start(void);
/// Stops counting and returns the number of allocation calls since the last start.
long fer_allocation_counting_stop(void);
#endif
