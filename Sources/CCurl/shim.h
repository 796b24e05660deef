#ifndef ECOCODE_CCURL_SHIM_H
#define ECOCODE_CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt / curl_easy_getinfo are variadic, which Swift cannot call: typed wrappers. */
static inline CURLcode ecc_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ecc_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ecc_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ecc_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ecc_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }

typedef size_t (*ecc_data_callback)(char *ptr, size_t size, size_t nmemb, void *userdata);
static inline CURLcode ecc_setopt_datafn(CURL *h, CURLoption o, ecc_data_callback f) { return curl_easy_setopt(h, o, f); }

typedef int (*ecc_seek_callback)(void *userdata, curl_off_t offset, int origin);
static inline CURLcode ecc_setopt_seekfn(CURL *h, ecc_seek_callback f) { return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, f); }

static inline CURLcode ecc_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ecc_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }
#endif
