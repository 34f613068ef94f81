/*
 * The bare guest: a freestanding 64-bit ELF (no libc, no Linux) that a VMM loads like a
 * vmlinux and enters in 64-bit long mode (Linux 64-bit boot protocol: paging on, identity
 * mapped low memory, flat 64-bit CS). It measures a VMM's floor: it prints the ready line,
 * signals the Firecracker-compatible boot timer and resets the VM through the i8042.
 *
 * Built by microvm/build.rs with GNU as + ld. One source gives every variant through
 * --defsym VARIANT=n, so the hostile guests share the well-tested boot code:
 *   0 bare     `BULKHEAD-READY <tsc> bare`, boot timer, i8042 reset
 *   1 triple   loads an empty IDT and executes ud2: #UD -> #GP -> #DF -> triple fault
 *   2 mmio     touches unmapped MMIO once, prints a ready line, then writes MMIO forever
 *   3 flood    writes to the serial port forever
 *   4 halt     prints a ready line and halts with interrupts off, forever
 *   5 panic    prints a ready line and Linux's panic line, then resets through the i8042
 *   6 poweroff prints a ready line and Linux's power-off line, then halts forever
 *   7 pvh      the bare guest with a PVH entry too (ELF note XEN_ELFNOTE_PHYS32_ENTRY): the
 *              64-bit entry prints `BULKHEAD-READY <tsc> linux64`, the 32-bit PVH entry checks
 *              that EBX points at an hvm_start_info (its magic) and prints
 *              `BULKHEAD-READY 0 pvh`; both then hit the boot timer and reset. A wrong magic
 *              triple-faults. So a test sees which entry a VMM took, and that it was right.
 *   8 hog      writes one byte to every 4 KiB page from 2 MiB to 32 MiB, whatever RAM it was
 *              given (past its RAM each write is an MMIO exit), prints `BULKHEAD-READY
 *              <tsc> hog` and halts with interrupts off, forever: the VMM's RSS must stay
 *              within the RAM it was told to give (--memory), however much the guest touches.
 */
        .set COM1,        0x3f8
        .set I8042_CMD,   0x64
        .set I8042_RESET, 0xfe
        .set BOOT_TIMER,  0xd0000000      /* Firecracker's MMIO boot-timer address */
        .set BOOT_MAGIC,  123
        .set UNMAPPED,    0xe0000000      /* inside the 32-bit MMIO gap, no device there */
        .set HOG_START,   0x200000        /* above the image, its .bss and the boot tables */
        .set HOG_END,     0x2000000       /* 32 MiB: inside the VMM's 1 GiB identity map */

        .section .text
        .code64
        .globl _start
_start:
        cli
        lea     stack_top(%rip), %rsp

        /*
         * Reach the MMIO gap (the boot timer sits at 3.25 GiB): the VMM's identity map
         * (Firecracker's and ours) covers only the first 1 GiB, so we hang one more page
         * directory, for 3-4 GiB, into the live tables: PDPT[3] of the table that CR3 points
         * to. Extending the live tables costs one trapped write; building and loading a full
         * 4 GiB table of our own cost ~12 ms under PVM's shadow paging.
         * The directory lives in .bss, which no loader promises to zero: clear it first.
         */
        lea     pd_high(%rip), %rdi
        xor     %eax, %eax
        mov     $512, %ecx
        rep stosq
        /* Two 2 MiB pages are all we touch: the boot timer's and the unmapped one's. */
        mov     $(BOOT_TIMER | 0x83), %eax  /* present | writable | 2 MiB page */
        mov     %rax, pd_high + ((BOOT_TIMER - 0xc0000000) >> 21) * 8(%rip)
        mov     $(UNMAPPED | 0x83), %eax
        mov     %rax, pd_high + ((UNMAPPED - 0xc0000000) >> 21) * 8(%rip)

        mov     %cr3, %rax
        and     $~0xfff, %rax
        mov     (%rax), %rbx                /* PML4[0] -> PDPT */
        and     $~0xfff, %rbx
        lea     pd_high(%rip), %rax
        or      $0x3, %rax                  /* present | writable */
        mov     %rax, 24(%rbx)              /* PDPT[3]: 3 GiB - 4 GiB */

.if VARIANT == 1
        /* Triple fault: with no IDT every exception escalates to a shutdown. */
        lidt    null_idt(%rip)
        ud2
.endif

.if VARIANT == 3
        /* Serial flood: never stops, never exits. The VMM must stay bounded and time out. */
        mov     $COM1, %dx
        mov     $'A', %al
3:      out     %al, %dx
        jmp     3b
.endif

.if VARIANT == 2
        /* A write and a read where no device lives; a VMM must survive both. */
        /* Addresses above 2 GiB do not fit a sign-extended disp32: go through a register. */
        mov     $UNMAPPED, %edi
        movb    $0x55, (%rdi)
        movb    (%rdi), %al
.endif

.if VARIANT == 8
        /* Touch every page up to HOG_END, RAM or not. */
        mov     $HOG_START, %edi
7:      movb    $1, (%rdi)
        add     $4096, %rdi
        cmp     $HOG_END, %rdi
        jb      7b
.endif

        /* The ready line: `BULKHEAD-READY <tsc> <boot_id>`. */
        lea     msg_ready(%rip), %rsi
        call    puts
        rdtsc
        shl     $32, %rdx
        or      %rdx, %rax
        call    putu64
        lea     msg_tail(%rip), %rsi
        call    puts

.if VARIANT == 2
        mov     $UNMAPPED, %edi
4:      movb    $0x55, (%rdi)
        jmp     4b
.endif

.if VARIANT == 5
        lea     msg_panic(%rip), %rsi
        call    puts
.endif

.if VARIANT == 6
        lea     msg_poweroff(%rip), %rsi
        call    puts
.endif

.if VARIANT == 4 || VARIANT == 6 || VARIANT == 8
5:      hlt
        jmp     5b
.endif

        /* Tell the VMM the guest has booted (Firecracker: one byte, 123, offset 0). */
        mov     $BOOT_TIMER, %edi
        movb    $BOOT_MAGIC, (%rdi)

        /* Reset through the keyboard controller: Firecracker and bulkhead-vm end the VM. */
        mov     $I8042_RESET, %al
        out     %al, $I8042_CMD
6:      hlt
        jmp     6b

/*
 * puts: write the NUL-terminated string at %rsi to COM1.
 * No LSR polling: every VMM we target has a UART whose transmitter is always empty, and
 * each poll would cost one more VM exit on the measured path.
 */
puts:
        mov     $COM1, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      ret

/* putu64: write %rax in decimal to COM1. */
putu64:
        lea     numbuf_end(%rip), %rdi
        mov     $10, %ecx
1:      xor     %edx, %edx
        div     %rcx
        add     $'0', %dl
        dec     %rdi
        mov     %dl, (%rdi)
        test    %rax, %rax
        jnz     1b
        mov     %rdi, %rsi
        jmp     puts

        .section .rodata
msg_ready:
        .asciz  "BULKHEAD-READY "
msg_tail:
.if VARIANT == 0
        .asciz  " bare\n"
.elseif VARIANT == 2
        .asciz  " mmio\n"
.elseif VARIANT == 7
        .asciz  " linux64\n"
.elseif VARIANT == 8
        .asciz  " hog\n"
.else
        .asciz  " hostile\n"
.endif
.if VARIANT == 5
msg_panic:
        .asciz  "[    1.000000] Kernel panic - not syncing: bulkhead bare test\n"
.endif
.if VARIANT == 6
msg_poweroff:
        .asciz  "[    1.000000] reboot: Power down\n"
.endif
.if VARIANT == 7
msg_pvh:
        .asciz  "BULKHEAD-READY 0 pvh\n"
.endif
        .balign 8
null_idt:
        .word   0
        .quad   0

.if VARIANT == 7
/*
 * The PVH entry (Xen's PVH boot ABI, as Linux implements it): 32-bit protected mode, paging
 * off, flat segments, EBX = physical address of the hvm_start_info. No stack is promised.
 */
        .set XEN_HVM_START_MAGIC, 0x336ec578
        .section .text
        .code32
pvh_start:
        cli
        cmpl    $XEN_HVM_START_MAGIC, (%ebx)
        jne     9f
        mov     $COM1, %dx
        mov     $msg_pvh, %esi
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      movb    $BOOT_MAGIC, BOOT_TIMER     /* paging off: the physical address */
        mov     $I8042_RESET, %al
        out     %al, $I8042_CMD
3:      hlt
        jmp     3b
        /* Not an hvm_start_info: #UD with the VMM's empty IDT escalates to a triple fault. */
9:      ud2
        .code64

/* The note a VMM finds the PVH entry by: owner "Xen", type 18, the entry's address. */
        .section .note.Xen, "a", @note
        .balign 4
        .long   2f - 1f                     /* namesz */
        .long   4f - 3f                     /* descsz */
        .long   18                          /* XEN_ELFNOTE_PHYS32_ENTRY */
1:      .asciz  "Xen"
2:      .balign 4
3:      .long   pvh_start
4:      .balign 4
.endif

        .section .data
numbuf:
        .fill   24, 1, 0
numbuf_end:
        .byte   0

        .section .bss
        .balign 4096
pd_high:
        .skip   4096
        .skip   4096
stack_top:
