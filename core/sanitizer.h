/*
 * sanitizer.h -- LRP_UNDER_ASAN: 1 when compiled with AddressSanitizer
 * (gcc defines __SANITIZE_ADDRESS__, clang has __has_feature).  Used where
 * ASan changes what is possible: address-space limits (it reserves
 * terabytes), and test sample sizes (it is ~5x slower).
 */
#ifndef LRP_SANITIZER_H
#define LRP_SANITIZER_H

#if defined(__SANITIZE_ADDRESS__)
#define LRP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LRP_UNDER_ASAN 1
#endif
#endif
#ifndef LRP_UNDER_ASAN
#define LRP_UNDER_ASAN 0
#endif

#endif
