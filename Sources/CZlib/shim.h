#ifndef FER_CZLIB_SHIM_H
#define FER_CZLIB_SHIM_H
#include <zlib.h>
#endif
