/*
 * The bare guest for QEMU: a 64 KiB firmware image for `-bios`. The CPU starts in real mode
 * at F000:FFF0 (the last 16 bytes of the image); we jump to the start of the image, print
 * `BULKHEAD-READY <tsc> bare` on COM1 and leave through isa-debug-exit
 * (`-device isa-debug-exit,iobase=0xf4,iosize=1`). QEMU then exits with status
 * (value << 1) | 1: we write 0, so a successful run exits with status 1.
 * QEMU has no Firecracker boot timer, so there is nothing to signal; real mode could not
 * reach 0xd0000000 anyway.
 *
 * Built by microvm/build.rs with GNU as + ld (`--oformat binary`, linked at 0).
 */
        .set COM1,       0x3f8
        .set DEBUG_EXIT, 0xf4

        .code16
        .section .text
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ss
        mov     $0x7000, %sp              /* low RAM, for call/ret only */
        mov     %cs, %ax                  /* data lives in this segment (0xf000) */
        mov     %ax, %ds

        mov     $msg_ready, %si
        call    puts

        /* rdtsc and print edx:eax in decimal with two 32-bit divisions per digit. */
        rdtsc
        mov     %edx, %ebx                /* high word */
        mov     %eax, %ebp                /* low word */
        mov     $10, %ecx
        xor     %di, %di                  /* digit count */
1:      xor     %edx, %edx
        mov     %ebx, %eax
        divl    %ecx
        mov     %eax, %ebx
        mov     %ebp, %eax
        divl    %ecx
        mov     %eax, %ebp
        push    %dx
        inc     %di
        mov     %ebx, %eax
        or      %ebp, %eax
        jnz     1b
        mov     $COM1, %dx
2:      pop     %ax
        add     $'0', %al
        out     %al, %dx
        dec     %di
        jnz     2b

        mov     $msg_tail, %si
        call    puts

        xor     %al, %al
        out     %al, $DEBUG_EXIT
3:      hlt
        jmp     3b

puts:
        mov     $COM1, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      ret

msg_ready:
        .asciz  "BULKHEAD-READY "
msg_tail:
        .asciz  " bare\n"

        /* The reset vector: physical 0xfffffff0, the image's last 16 bytes. */
        .org    0xfff0
        ljmp    $0xf000, $_start
        .org    0x10000
