//! Proves the ordering engine on the rename, link and orphan cases that broke btrfs send
//! over the years: each scenario changes a tree, and the incremental stream applied to a
//! copy of the old tree must give exactly the new one (stream versions 1 and 2).

mod support;

use support::{check_scenario, Ops};

fn base(o: &Ops) {
    o.mkdir("/a");
    o.mkdir("/a/b");
    o.file("/a/f", b"file f");
    o.file("/a/b/g", b"file g");
    o.file("/x", b"x");
    o.file("/y", b"yy");
}

#[test]
fn swap_two_files_names() {
    check_scenario(base, |o| o.exchange("/x", "/y"));
}

#[test]
fn swap_two_files_names_with_three_renames() {
    check_scenario(base, |o| {
        o.mv("/x", "/tmp");
        o.mv("/y", "/x");
        o.mv("/tmp", "/y");
    });
}

#[test]
fn swap_two_directories() {
    check_scenario(
        |o| {
            base(o);
            o.mkdir("/c");
            o.file("/c/h", b"h");
        },
        |o| o.exchange("/a", "/c"),
    );
}

#[test]
fn rename_cycle_a_b_c() {
    check_scenario(
        |o| {
            o.file("/a", b"A");
            o.file("/b", b"B");
            o.file("/c", b"C");
        },
        |o| {
            o.mv("/a", "/t");
            o.mv("/c", "/a");
            o.mv("/b", "/c");
            o.mv("/t", "/b");
        },
    );
}

#[test]
fn directory_rename_cycle() {
    check_scenario(
        |o| {
            for d in ["/d1", "/d2", "/d3"] {
                o.mkdir(d);
                o.file(&format!("{d}/f"), d.as_bytes());
            }
        },
        |o| {
            o.mv("/d1", "/t");
            o.mv("/d3", "/d1");
            o.mv("/d2", "/d3");
            o.mv("/t", "/d2");
        },
    );
}

#[test]
fn move_directory_under_its_former_child() {
    check_scenario(
        |o| {
            o.mkdir("/a");
            o.mkdir("/a/b");
            o.file("/a/b/f", b"f");
        },
        |o| {
            o.mv("/a/b", "/b");
            o.mv("/a", "/b/a");
        },
    );
}

#[test]
fn invert_a_chain_of_three_directories() {
    check_scenario(
        |o| {
            o.mkdir("/a");
            o.mkdir("/a/b");
            o.mkdir("/a/b/c");
            o.file("/a/b/c/f", b"f");
        },
        |o| {
            o.mv("/a/b/c", "/c");
            o.mv("/a/b", "/c/b");
            o.mv("/a", "/c/b/a");
        },
    );
}

#[test]
fn replace_file_with_directory_of_same_name() {
    check_scenario(base, |o| {
        o.rm("/x");
        o.mkdir("/x");
        o.file("/x/inner", b"inner");
    });
}

#[test]
fn replace_directory_with_file_of_same_name() {
    check_scenario(base, |o| {
        o.rm("/a/b/g");
        o.rmdir("/a/b");
        o.file("/a/b", b"now a file");
    });
}

#[test]
fn delete_dir_and_create_file_of_its_name_elsewhere_moved_child() {
    check_scenario(base, |o| {
        o.mv("/a/b/g", "/g");
        o.rmdir("/a/b");
        o.file("/a/b", b"file");
    });
}

#[test]
fn hard_link_added_in_other_dir_then_original_removed() {
    check_scenario(base, |o| {
        o.link("/a/f", "/a/b/f2");
        o.rm("/a/f");
    });
}

#[test]
fn hard_links_added_and_removed() {
    check_scenario(
        |o| {
            base(o);
            o.link("/x", "/a/x1");
            o.link("/x", "/a/b/x2");
        },
        |o| {
            o.rm("/a/x1");
            o.link("/x", "/x3");
            o.link("/y", "/a/y1");
        },
    );
}

#[test]
fn inode_number_reuse_name_reused_by_new_inode() {
    // tidefs never reuses a number within a subvolume; the same name gets a new inode.
    check_scenario(base, |o| {
        o.rm("/x");
        o.file("/x", b"new x with other content");
    });
}

#[test]
fn rename_over_existing_target() {
    check_scenario(base, |o| o.mv("/x", "/y"));
}

#[test]
fn rename_over_existing_target_that_is_hard_linked() {
    check_scenario(
        |o| {
            base(o);
            o.link("/y", "/a/ylink");
        },
        |o| o.mv("/x", "/y"),
    );
}

#[test]
fn rmdir_of_a_dir_whose_child_moved_out() {
    check_scenario(base, |o| {
        o.mv("/a/b", "/b");
        o.mv("/a/f", "/b/f");
        o.rmdir("/a");
    });
}

#[test]
fn deep_chain_of_nested_renames() {
    check_scenario(
        |o| {
            let mut p = String::new();
            for i in 0..12 {
                p.push_str(&format!("/d{i}"));
                o.mkdir(&p);
            }
            o.file(&format!("{p}/leaf"), b"leaf");
        },
        |o| {
            let mut p = String::new();
            for i in 0..12 {
                p.push_str(&format!("/d{i}"));
                let new = format!("{}/e{i}", &p[..p.rfind('/').unwrap()]);
                o.mv(&p, &new);
                p = new;
            }
        },
    );
}

#[test]
fn reverse_nesting_of_a_deep_chain() {
    check_scenario(
        |o| {
            o.mkdir("/n0");
            o.mkdir("/n0/n1");
            o.mkdir("/n0/n1/n2");
            o.mkdir("/n0/n1/n2/n3");
        },
        |o| {
            o.mv("/n0/n1/n2/n3", "/n3");
            o.mv("/n0/n1/n2", "/n3/n2");
            o.mv("/n0/n1", "/n3/n2/n1");
            o.mv("/n0", "/n3/n2/n1/n0");
        },
    );
}

#[test]
fn directory_moved_into_a_new_directory() {
    check_scenario(base, |o| {
        o.mkdir("/new");
        o.mv("/a", "/new/a");
    });
}

#[test]
fn new_directory_created_inside_renamed_directory() {
    check_scenario(base, |o| {
        o.mv("/a", "/z");
        o.mkdir("/z/new");
        o.file("/z/new/f", b"f");
    });
}

#[test]
fn file_moved_into_directory_created_later() {
    check_scenario(base, |o| {
        o.mkdir("/later");
        o.mv("/x", "/later/x");
        o.mv("/a/b", "/later/b");
    });
}

#[test]
fn name_taken_by_a_directory_that_moves_later() {
    // c → x, a → x/y, b → a (the kernel's wait_for_dest_dir_move example).
    check_scenario(
        |o| {
            o.mkdir("/a");
            o.mkdir("/b");
            o.mkdir("/c");
            o.file("/a/fa", b"a");
            o.file("/b/fb", b"b");
        },
        |o| {
            o.mv("/c", "/x");
            o.mv("/a", "/x/y");
            o.mv("/b", "/a");
        },
    );
}

#[test]
fn delete_whole_tree() {
    check_scenario(base, |o| {
        o.rm("/a/b/g");
        o.rmdir("/a/b");
        o.rm("/a/f");
        o.rmdir("/a");
        o.rm("/x");
    });
}

#[test]
fn directory_replaced_by_moved_sibling() {
    check_scenario(
        |o| {
            base(o);
            o.mkdir("/c");
        },
        |o| {
            o.rm("/a/b/g");
            o.rmdir("/a/b");
            o.mv("/c", "/a/b");
        },
    );
}

#[test]
fn file_type_change_symlink_to_fifo_and_devices() {
    check_scenario(
        |o| {
            o.symlink("/s", "target");
            o.mknod("/n", 0o010644, 0);
        },
        |o| {
            o.rm("/s");
            o.mknod("/s", 0o010600, 0);
            o.rm("/n");
            o.mknod("/n", 0o020600, (1 << 8) | 3);
            o.mknod("/sock", 0o140644, 0);
            o.mknod("/blk", 0o060640, (8 << 8) | 1);
            o.symlink("/a-long-link", &"t/".repeat(200));
        },
    );
}

#[test]
fn data_changes_only_changed_ranges_holes_and_truncation() {
    check_scenario(
        |o| {
            o.file("/big", &vec![7u8; 300_000]);
            o.file("/small", b"small file");
            o.file("/shrink", &vec![1u8; 50_000]);
            o.file("/sparse", b"");
            o.write("/sparse", 1 << 20, b"far away");
        },
        |o| {
            o.write("/big", 100_000, b"changed in the middle");
            o.write("/small", 5, b"CHANGED");
            o.truncate("/shrink", 10_000);
            o.punch("/big", 200_000, 40_000);
            o.truncate("/sparse", 3 << 20);
            o.write("/sparse", 2 << 20, b"more");
            o.prealloc("/small", 0, 8192);
        },
    );
}

#[test]
fn xattrs_set_changed_and_removed() {
    check_scenario(
        |o| {
            base(o);
            o.setxattr("/x", "user.one", b"1");
            o.setxattr("/x", "user.two", b"2");
            o.setxattr("/a", "user.dir", b"d");
            o.setxattr("/y", "user.big", &vec![b'v'; 10_000]);
        },
        |o| {
            o.rmxattr("/x", "user.one");
            o.setxattr("/x", "user.two", b"two");
            o.setxattr("/x", "trusted.three", b"3");
            o.setxattr("/y", "user.big", &vec![b'w'; 9_000]);
            o.setxattr("/a/b", "security.capability", b"\x01\x00\x00\x02");
        },
    );
}

#[test]
fn chmod_chown_utimes_including_parent_directory_times() {
    check_scenario(base, |o| {
        o.chmod("/x", 0o4755);
        o.chown("/y", 1000, 100);
        o.utimes("/a", 1_600_000_000);
        o.chmod("/a/b", 0o700);
        o.file("/a/b/new", b"touches b's mtime");
    });
}

#[test]
fn chown_after_capability_keeps_capability() {
    check_scenario(
        |o| {
            o.file("/bin", b"#!");
            o.setxattr("/bin", "security.capability", b"\x01\x00\x00\x02cap");
        },
        |o| o.chown("/bin", 5, 5),
    );
}

#[test]
fn orphan_name_collides_with_a_real_name() {
    check_scenario(
        |o| {
            o.file("/x", b"x");
            o.file("/y", b"y");
            o.file("/o999-1-0", b"looks like an orphan");
        },
        |o| {
            o.exchange("/x", "/y");
            o.mkdir("/o258-1-0");
        },
    );
}

#[test]
fn hard_linked_file_renamed_over_one_of_its_own_links() {
    check_scenario(
        |o| {
            o.file("/f", b"f");
            o.link("/f", "/g");
            o.file("/h", b"h");
        },
        |o| {
            o.mv("/h", "/f");
            o.mv("/g", "/h");
        },
    );
}

#[test]
fn moved_directory_and_its_renamed_children() {
    check_scenario(base, |o| {
        o.mv("/a/b/g", "/a/g2");
        o.mv("/a/f", "/a/b/f");
        o.mv("/a/b", "/b2");
        o.mv("/a", "/b2/a");
    });
}

#[test]
fn empty_change_sends_nothing_but_header_and_end() {
    let stream = check_scenario(base, |_| {});
    let commands: Vec<_> = tidefs_stream::SendStreamReader::new(&stream[..])
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(commands.len(), 2, "{commands:?}");
}

#[test]
fn root_attributes_change() {
    check_scenario(base, |o| {
        o.chmod("/", 0o700);
        o.chown("/", 3, 4);
        o.setxattr("/", "user.root", b"r");
    });
}

#[test]
fn many_files_moved_between_directories_swap_contents() {
    check_scenario(
        |o| {
            o.mkdir("/p");
            o.mkdir("/q");
            for i in 0..20 {
                o.file(&format!("/p/f{i}"), format!("p{i}").as_bytes());
                o.file(&format!("/q/f{i}"), format!("q{i}").as_bytes());
            }
        },
        |o| {
            o.exchange("/p", "/q");
            for i in (0..20).step_by(3) {
                o.exchange(&format!("/p/f{i}"), &format!("/q/f{i}"));
            }
        },
    );
}

#[test]
fn blocks_preallocated_past_the_end_survive_a_write_that_grows_the_file() {
    // a: 10 bytes and 8 KiB preallocated past the end; b: a write grows the file to 7,777
    // bytes (the preallocation stays, as on Linux); c: a truncate up to 10,000 shows its
    // first block. Sending b must not make the receiver truncate (which would drop the
    // preallocation) where the source only wrote.
    let (fs, sub, clock) = support::source();
    let o = Ops {
        sub: &sub,
        clock: &clock,
    };
    o.file("/f", b"ten bytes!");
    o.prealloc("/f", 8192, 8192);
    fs.create_snapshot("src", "a").unwrap();
    o.write("/f", 5000, &[3u8; 2777]);
    fs.create_snapshot("src", "b").unwrap();
    o.truncate("/f", 10_000);
    fs.create_snapshot("src", "c").unwrap();
    let (dst, _) = support::mem_fs();
    let mut prev = None;
    for name in ["a", "b", "c"] {
        let snap = fs.snapshot("src", name).unwrap();
        let stream = support::send_bytes(
            &fs,
            &snap,
            prev.as_ref(),
            &[],
            tidefs_stream::StreamVersion::V2,
        );
        let got = support::receive_bytes(&dst, "dst", &stream);
        support::assert_same_tree(&snap, &got, true);
        prev = Some(snap);
    }
    support::assert_clean(&dst);
}
