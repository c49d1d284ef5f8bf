/*
 * Test helper: answers questions about libseccomp on stdin/stdout, so the
 * skiff-seccomp tests can compare the compiler with the library runc and
 * crun use. Built by the tests with the system C compiler (libseccomp-dev).
 *
 * Requests, one per line; each gets its answer before the next is read:
 *   names ARCH LO HI    -> "NR NAME" for every number in [LO, HI) that
 *                          libseccomp names on ARCH, then "end"
 *   filter DEFAULT OPTIMIZE ARCH...
 *                       -> "ok" or "error RC": starts a filter
 *   rule ACTION NAME N (ARG OP A B){N}
 *                       -> "ok", "unknown" (libseccomp does not know NAME),
 *                          or "error RC": seccomp_rule_add_array on the
 *                          native number, as runc and crun do
 *   export              -> "bpf N" and N lines "CODE JT JF K", or
 *                          "error RC"; ends the filter
 * Numbers are decimal; ARCH and actions are the kernel's values.
 */
#include <errno.h>
#include <inttypes.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/filter.h>

static scmp_filter_ctx ctx;

static void names(char *args)
{
	uint32_t arch;
	long lo, hi;
	if (sscanf(args, "%" SCNu32 " %ld %ld", &arch, &lo, &hi) != 3) {
		printf("error %d\n", -EINVAL);
		return;
	}
	for (long nr = lo; nr < hi; nr++) {
		char *name = seccomp_syscall_resolve_num_arch(arch, (int)nr);
		if (name != NULL) {
			printf("%ld %s\n", nr, name);
			free(name);
		}
	}
	printf("end\n");
}

static void filter(char *args)
{
	uint32_t def, arch;
	int optimize, n, rc;
	if (ctx != NULL)
		seccomp_release(ctx);
	if (sscanf(args, "%" SCNu32 " %d%n", &def, &optimize, &n) != 2) {
		printf("error %d\n", -EINVAL);
		return;
	}
	ctx = seccomp_init(def);
	if (ctx == NULL) {
		printf("error %d\n", -EINVAL);
		return;
	}
	if (optimize) {
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
		if (rc < 0) {
			printf("error %d\n", rc);
			return;
		}
	}
	args += n;
	while (sscanf(args, " %" SCNu32 "%n", &arch, &n) == 1) {
		rc = seccomp_arch_add(ctx, arch);
		if (rc < 0 && rc != -EEXIST) {
			printf("error %d\n", rc);
			return;
		}
		args += n;
	}
	printf("ok\n");
}

static void rule(char *args)
{
	struct scmp_arg_cmp cmp[6];
	char name[128];
	uint32_t action;
	int count, n, nr, rc;
	if (sscanf(args, "%" SCNu32 " %127s %d%n", &action, name, &count, &n) != 3 ||
	    count < 0 || count > 6) {
		printf("error %d\n", -EINVAL);
		return;
	}
	args += n;
	for (int i = 0; i < count; i++) {
		unsigned arg, op;
		if (sscanf(args, " %u %u %" SCNu64 " %" SCNu64 "%n", &arg, &op,
			   &cmp[i].datum_a, &cmp[i].datum_b, &n) != 4) {
			printf("error %d\n", -EINVAL);
			return;
		}
		cmp[i].arg = arg;
		cmp[i].op = op;
		args += n;
	}
	nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR) {
		printf("unknown\n");
		return;
	}
	rc = seccomp_rule_add_array(ctx, action, nr, (unsigned)count, cmp);
	if (rc < 0)
		printf("error %d\n", rc);
	else
		printf("ok\n");
}

static void export(void)
{
	struct sock_filter insn;
	FILE *f = tmpfile();
	long size;
	int rc;
	if (f == NULL) {
		printf("error %d\n", -errno);
		return;
	}
	rc = seccomp_export_bpf(ctx, fileno(f));
	if (rc < 0) {
		printf("error %d\n", rc);
		fclose(f);
		return;
	}
	size = lseek(fileno(f), 0, SEEK_END);
	lseek(fileno(f), 0, SEEK_SET);
	printf("bpf %ld\n", size / (long)sizeof(insn));
	while (read(fileno(f), &insn, sizeof(insn)) == (ssize_t)sizeof(insn))
		printf("%u %u %u %u\n", insn.code, insn.jt, insn.jf, insn.k);
	fclose(f);
	seccomp_release(ctx);
	ctx = NULL;
}

int main(void)
{
	char line[4096];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		char *rest = strchr(line, ' ');
		rest = rest != NULL ? rest + 1 : line + strlen(line);
		if (strncmp(line, "names ", 6) == 0)
			names(rest);
		else if (strncmp(line, "filter ", 7) == 0)
			filter(rest);
		else if (strncmp(line, "rule ", 5) == 0 && ctx != NULL)
			rule(rest);
		else if (strncmp(line, "export", 6) == 0 && ctx != NULL)
			export();
		else
			printf("error %d\n", -EINVAL);
		fflush(stdout);
	}
	return 0;
}
