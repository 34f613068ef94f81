/*
 * Debian's libseccomp.a is compiled against glibc with _FORTIFY_SOURCE, and one of its
 * objects (gen_pfc.o, behind seccomp_export_pfc) calls glibc's checked fprintf. musl has no
 * _chk functions, so the musl build of every binary that links libseccomp gets this one
 * (runtime/build.rs). Everything else the archive calls is plain C library API that musl
 * provides with the same x86_64 ABI. The check glibc would make (a %n in a writable format)
 * cannot happen: libseccomp's formats are literals.
 */
#include <stdarg.h>

typedef struct _FILE FILE;
int vfprintf(FILE *stream, const char *format, va_list ap);

int __fprintf_chk(FILE *stream, int flag, const char *format, ...)
{
	va_list ap;
	int n;

	(void)flag;
	va_start(ap, format);
	n = vfprintf(stream, format, ap);
	va_end(ap);
	return n;
}
