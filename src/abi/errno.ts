/**
 * Kernel errno values (x86-64 Linux, include/uapi/asm-generic/errno*.h).
 *
 * Shared by the AssemblyScript core and the TypeScript host: `asc` and `tsc` both compile
 * this file, so the core's negative return codes and the host's names come from one table.
 * @module
 */
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const E2BIG = 7;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOTTY = 25;
export const EFBIG = 27;
export const ENOSPC = 28;
export const ERANGE = 34;
export const EDEADLK = 35;
export const ETIME = 62;
export const EOVERFLOW = 75;
export const EMSGSIZE = 90;
export const EOPNOTSUPP = 95;
export const EADDRINUSE = 98;
export const EALREADY = 114;
export const EREMOTEIO = 121;
export const EHWPOISON = 133;
