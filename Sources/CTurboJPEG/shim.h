#ifndef FER_CTURBOJPEG_SHIM_H
#define FER_CTURBOJPEG_SHIM_H
#include <turbojpeg.h>
#endif
