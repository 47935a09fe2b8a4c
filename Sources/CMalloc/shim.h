#ifndef FER_CMALLOC_SHIM_H
#define FER_CMALLOC_SHIM_H
// glibc's malloc tuning (mallopt, malloc_trim), which the Glibc module leaves out.
#include <malloc.h>
#endif
