#ifndef FER_CSPNG_SHIM_H
#define FER_CSPNG_SHIM_H
#include <spng.h>
#endif
