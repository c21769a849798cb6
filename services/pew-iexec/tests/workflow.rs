//! The core's replicate workflow: statuses, transitions, next actions and update checks, checked
//! against the Java lists of iexec-common 9.2 / iexec-core 9.3 written out literally.

use std::collections::HashSet;

use pew_iexec::status::{NextAction, ReplicateStatus, StatusCause};
use pew_iexec::workflow::{
    UpdateRefusal, can_transition, check_update, next_action, transitions_from,
};

use NextAction as A;
use ReplicateStatus::*;

// Literal copies of the Java lists (`ReplicateStatus.get…Statuses`).
const NON_FINAL_WORKFLOW: [ReplicateStatus; 28] = [
    Created,
    Starting,
    StartFailed,
    Started,
    AppDownloading,
    AppDownloadFailed,
    AppDownloaded,
    DataDownloading,
    DataDownloadFailed,
    DataDownloaded,
    Computing,
    ComputeFailed,
    Computed,
    Contributing,
    ContributeFailed,
    Contributed,
    Revealing,
    RevealFailed,
    Revealed,
    ResultUploadRequested,
    ResultUploading,
    ResultUploadFailed,
    ResultUploaded,
    ContributeAndFinalizeOngoing,
    ContributeAndFinalizeFailed,
    ContributeAndFinalizeDone,
    Completing,
    CompleteFailed,
];
const FAILABLE: [ReplicateStatus; 21] = [
    Created,
    Starting,
    StartFailed,
    Started,
    AppDownloading,
    AppDownloadFailed,
    AppDownloaded,
    DataDownloading,
    DataDownloadFailed,
    DataDownloaded,
    Computing,
    ComputeFailed,
    Computed,
    Contributing,
    ContributeFailed,
    Contributed,
    Revealing,
    RevealFailed,
    ContributeAndFinalizeOngoing,
    ContributeAndFinalizeFailed,
    Aborted,
];
const RECOVERABLE: [ReplicateStatus; 24] = [
    Created,
    Starting,
    Started,
    AppDownloading,
    AppDownloadFailed,
    AppDownloaded,
    DataDownloading,
    DataDownloadFailed,
    DataDownloaded,
    Computing,
    Computed,
    Contributing,
    Contributed,
    Revealing,
    Revealed,
    ResultUploadRequested,
    ResultUploading,
    ResultUploadFailed,
    ResultUploaded,
    ContributeAndFinalizeOngoing,
    ContributeAndFinalizeDone,
    ContributeAndFinalizeFailed,
    Completing,
    Recovering,
];
const SUCCESS: [ReplicateStatus; 17] = [
    Created,
    Starting,
    Started,
    AppDownloading,
    AppDownloaded,
    DataDownloading,
    DataDownloaded,
    Computing,
    Computed,
    Contributing,
    Contributed,
    Revealing,
    Revealed,
    ContributeAndFinalizeOngoing,
    ContributeAndFinalizeDone,
    Completing,
    Completed,
];
const FAILURE: [ReplicateStatus; 10] = [
    StartFailed,
    AppDownloadFailed,
    DataDownloadFailed,
    ComputeFailed,
    ContributeFailed,
    RevealFailed,
    ResultUploadFailed,
    ContributeAndFinalizeFailed,
    CompleteFailed,
    Failed,
];

/// The edges of `ReplicateWorkflow`, rebuilt pass by pass the way the Java constructor does.
fn java_edges() -> HashSet<(ReplicateStatus, ReplicateStatus)> {
    let default_path: &[(ReplicateStatus, &[ReplicateStatus])] = &[
        (Created, &[Starting]),
        (Starting, &[Started, StartFailed]),
        (Started, &[AppDownloading]),
        (AppDownloading, &[AppDownloaded, AppDownloadFailed]),
        (AppDownloadFailed, &[Contributing]),
        (AppDownloaded, &[DataDownloading]),
        (DataDownloading, &[DataDownloaded, DataDownloadFailed]),
        (DataDownloadFailed, &[Contributing]),
        (DataDownloaded, &[Computing]),
        (Computing, &[Computed, ComputeFailed]),
        (Computed, &[Contributing, ContributeAndFinalizeOngoing]),
        (Contributing, &[Contributed, ContributeFailed]),
        (Contributed, &[Revealing]),
        (Revealing, &[Revealed, RevealFailed]),
        (Revealed, &[ResultUploadRequested, Completing]),
        (ResultUploadRequested, &[ResultUploading]),
        (ResultUploading, &[ResultUploaded, ResultUploadFailed]),
        (ResultUploadFailed, &[Completing]),
        (ResultUploaded, &[Completing]),
        (
            ContributeAndFinalizeOngoing,
            &[ContributeAndFinalizeDone, ContributeAndFinalizeFailed],
        ),
        (ContributeAndFinalizeDone, &[Completing]),
        (Completing, &[Completed, CompleteFailed]),
    ];
    let mut edges = HashSet::new();
    for (from, targets) in default_path {
        edges.extend(targets.iter().map(|&to| (*from, to)));
    }
    // addTransitionsToFailed
    edges.extend(FAILABLE.iter().map(|&from| (from, Failed)));
    edges.extend([(WorkerLost, Failed), (Recovering, Failed)]);
    // addWorkerLostTransitions
    edges.extend(NON_FINAL_WORKFLOW.iter().map(|&from| (from, WorkerLost)));
    edges.extend([(Recovering, WorkerLost), (Aborted, WorkerLost)]);
    edges.extend(
        NON_FINAL_WORKFLOW
            .iter()
            .chain(&[Completed, Failed])
            .map(|&to| (WorkerLost, to)),
    );
    edges.extend([(WorkerLost, Recovering), (WorkerLost, Aborted)]);
    // addRecoveringTransitions
    edges.extend(RECOVERABLE.iter().map(|&from| (from, Recovering)));
    edges.insert((WorkerLost, Recovering));
    edges.extend(ReplicateStatus::ALL.iter().map(|&to| (Recovering, to)));
    edges.remove(&(Recovering, Created));
    edges.remove(&(Recovering, Starting));
    // addAbortedTransitions
    edges.extend(
        NON_FINAL_WORKFLOW
            .iter()
            .chain(&[WorkerLost])
            .map(|&from| (from, Aborted)),
    );
    edges.extend([
        (WorkerLost, Aborted),
        (Aborted, Completed),
        (Aborted, Failed),
    ]);
    edges
}

#[test]
fn transitions_match_the_java_workflow_for_every_pair() {
    let expected = java_edges();
    for &from in ReplicateStatus::ALL {
        for &to in ReplicateStatus::ALL {
            assert_eq!(
                can_transition(from, to),
                expected.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
    // Sanity on the reference itself, counted by hand: 33 default edges, 23 to FAILED, 30 to
    // WORKER_LOST, 31 from it, 24 to RECOVERING, 28 more from it, 29 to or from ABORTED.
    assert_eq!(expected.len(), 198);
}

#[test]
fn status_categories_match_the_java_lists() {
    for &status in ReplicateStatus::ALL {
        assert_eq!(
            status.is_failable(),
            FAILABLE.contains(&status),
            "failable {status}"
        );
        assert_eq!(
            status.is_recoverable(),
            RECOVERABLE.contains(&status),
            "recoverable {status}"
        );
        assert_eq!(
            status.is_abortable(),
            NON_FINAL_WORKFLOW.contains(&status) || status == WorkerLost,
            "abortable {status}"
        );
        assert_eq!(
            status.is_success(),
            SUCCESS.contains(&status),
            "success {status}"
        );
        assert_eq!(
            status.is_failure(),
            FAILURE.contains(&status),
            "failure {status}"
        );
        assert_eq!(
            status.is_final(),
            matches!(status, Completed | Failed),
            "final {status}"
        );
    }
    let failed_before_computed: Vec<_> = ReplicateStatus::ALL
        .iter()
        .copied()
        .filter(|s| s.is_failed_before_computed())
        .collect();
    assert_eq!(
        failed_before_computed,
        [
            StartFailed,
            AppDownloadFailed,
            DataDownloadFailed,
            ComputeFailed
        ]
    );
}

#[test]
fn core_only_statuses_are_not_sent_by_workers() {
    let core_only: Vec<_> = ReplicateStatus::ALL
        .iter()
        .copied()
        .filter(|s| !s.set_by_worker())
        .collect();
    assert_eq!(
        core_only,
        [
            Created,
            ResultUploadRequested,
            Failed,
            Recovering,
            WorkerLost
        ]
    );
}

/// Feeds `steps` to the core's checks one after the other, like dev-core answering a worker.
fn run(
    history: &mut Vec<ReplicateStatus>,
    steps: &[(ReplicateStatus, Option<StatusCause>, Option<NextAction>)],
) {
    for &(status, cause, reply) in steps {
        assert_eq!(
            check_update(history, status),
            Ok(()),
            "{status} after {history:?}"
        );
        assert_eq!(next_action(status, cause), reply, "reply to {status}");
        history.push(status);
    }
}

#[test]
fn happy_path_of_a_standard_task() {
    let mut history = vec![Created];
    run(
        &mut history,
        &[
            (Starting, None, Some(A::PleaseContinue)),
            (Started, None, Some(A::PleaseDownloadApp)),
            (AppDownloading, None, Some(A::PleaseContinue)),
            (AppDownloaded, None, Some(A::PleaseDownloadData)),
            (DataDownloading, None, Some(A::PleaseContinue)),
            (DataDownloaded, None, Some(A::PleaseCompute)),
            (Computing, None, Some(A::PleaseContinue)),
            (Computed, None, Some(A::PleaseContribute)),
            (Contributing, None, Some(A::PleaseContinue)),
            (Contributed, None, Some(A::PleaseWait)),
            (Revealing, None, Some(A::PleaseContinue)),
            (Revealed, None, Some(A::PleaseWait)),
            // Set by the core on the revealer it picks; it then pushes PLEASE_UPLOAD.
            (ResultUploadRequested, None, None),
            (ResultUploading, None, Some(A::PleaseContinue)),
            (ResultUploaded, None, Some(A::PleaseWait)),
            (Completing, None, Some(A::PleaseContinue)),
            (Completed, None, Some(A::PleaseWait)),
        ],
    );
    assert!(history.last().unwrap().is_final());
    assert!(transitions_from(Completed).is_empty());
}

#[test]
fn revealer_not_picked_for_upload_completes_directly() {
    let mut history = vec![
        Created,
        Starting,
        Started,
        AppDownloading,
        AppDownloaded,
        DataDownloading,
        DataDownloaded,
        Computing,
        Computed,
        Contributing,
        Contributed,
        Revealing,
        Revealed,
    ];
    run(
        &mut history,
        &[
            (Completing, None, Some(A::PleaseContinue)),
            (Completed, None, Some(A::PleaseWait)),
        ],
    );
}

#[test]
fn download_failures_blamed_on_the_task_contribute_an_error_result() {
    use StatusCause as C;
    for cause in [
        C::DatasetFileDownloadFailed,
        C::DatasetFileBadChecksum,
        C::InputFilesDownloadFailed,
    ] {
        let mut history = vec![
            Created,
            Starting,
            Started,
            AppDownloading,
            AppDownloaded,
            DataDownloading,
        ];
        run(
            &mut history,
            &[
                (DataDownloadFailed, Some(cause), Some(A::PleaseContribute)),
                (Contributing, None, Some(A::PleaseContinue)),
                (Contributed, None, Some(A::PleaseWait)),
            ],
        );
    }
    let mut history = vec![Created, Starting, Started, AppDownloading];
    run(
        &mut history,
        &[(
            AppDownloadFailed,
            Some(C::AppImageDownloadFailed),
            Some(A::PleaseContribute),
        )],
    );
}

#[test]
fn download_failures_with_other_causes_abort() {
    use StatusCause as C;
    assert_eq!(
        next_action(AppDownloadFailed, Some(C::DatasetFileDownloadFailed)),
        Some(A::PleaseAbort)
    );
    assert_eq!(
        next_action(AppDownloadFailed, Some(C::ChainUnreachable)),
        Some(A::PleaseAbort)
    );
    assert_eq!(next_action(AppDownloadFailed, None), Some(A::PleaseAbort));
    assert_eq!(
        next_action(DataDownloadFailed, Some(C::AppImageDownloadFailed)),
        Some(A::PleaseAbort)
    );
    assert_eq!(next_action(DataDownloadFailed, None), Some(A::PleaseAbort));
    // The cause only matters for download failures.
    assert_eq!(
        next_action(ComputeFailed, Some(C::AppImageDownloadFailed)),
        Some(A::PleaseAbort)
    );
    assert_eq!(
        next_action(Computed, Some(C::InputFilesDownloadFailed)),
        Some(A::PleaseContribute)
    );
}

#[test]
fn every_failure_reported_by_a_worker_gets_abort() {
    for &status in ReplicateStatus::ALL
        .iter()
        .filter(|s| s.is_failure() && s.set_by_worker())
    {
        assert_eq!(next_action(status, None), Some(A::PleaseAbort), "{status}");
    }
    for status in [
        Created,
        ResultUploadRequested,
        Failed,
        Aborted,
        Recovering,
        WorkerLost,
    ] {
        assert_eq!(next_action(status, None), None, "{status}");
    }
}

#[test]
fn failed_transactions_are_refused_and_the_worker_aborts() {
    let contributing = [
        Created,
        Starting,
        Started,
        AppDownloading,
        AppDownloaded,
        DataDownloading,
        DataDownloaded,
        Computing,
        Computed,
        Contributing,
    ];
    // The workflow has the edge, but the core refuses the update (iexec-core 9.2).
    assert!(can_transition(Contributing, ContributeFailed));
    let refusal = check_update(&contributing, ContributeFailed).unwrap_err();
    assert_eq!(refusal, UpdateRefusal::Refused(ContributeFailed));
    assert_eq!(
        (refusal.http_status(), refusal.reply()),
        (202, A::PleaseAbort)
    );
    assert_eq!(check_update(&contributing, Aborted), Ok(()));

    let revealing = [&contributing[..], &[Contributed, Revealing]].concat();
    assert_eq!(
        check_update(&revealing, RevealFailed),
        Err(UpdateRefusal::Refused(RevealFailed))
    );
    assert_eq!(check_update(&revealing, Aborted), Ok(()));
}

#[test]
fn repeated_status_is_already_reported() {
    let history = [Created, Starting, Started];
    let refusal = check_update(&history, Starting).unwrap_err();
    assert_eq!(refusal, UpdateRefusal::AlreadyReported(Starting));
    assert_eq!(
        (refusal.http_status(), refusal.reply()),
        (208, A::PleaseWait)
    );
    assert_eq!(refusal.to_string(), "status STARTING already reported");
}

#[test]
fn transitions_the_core_refuses() {
    for (from, to) in [
        (Created, Computed),
        (Created, Started),
        (Computed, Revealing),
        (Computed, Contributed),
        (Contributed, RevealFailed),
        (Contributed, Completing),
        (Revealed, ResultUploading),
        (ComputeFailed, Contributing),
        (StartFailed, AppDownloading),
        (Completed, Aborted),
        (Completed, Failed),
        (Failed, Completed),
        (Recovering, Created),
        (Recovering, Starting),
        (Aborted, Starting),
        (Aborted, Aborted),
        (WorkerLost, WorkerLost),
    ] {
        assert!(!can_transition(from, to), "{from} -> {to}");
        if from == to {
            // A repeat is caught earlier, as already reported.
            continue;
        }
        let refusal = check_update(&[from], to).unwrap_err();
        assert_eq!(refusal, UpdateRefusal::BadTransition { from, to });
        assert_eq!(
            (refusal.http_status(), refusal.reply()),
            (202, A::PleaseAbort)
        );
    }
    assert_eq!(
        check_update(&[Created, Aborted], Aborted),
        Err(UpdateRefusal::AlreadyReported(Aborted))
    );
    assert_eq!(
        check_update(&[Created, Computed], Revealing)
            .unwrap_err()
            .to_string(),
        "transition COMPUTED -> REVEALING is not allowed"
    );
    assert_eq!(
        check_update(&[], Starting),
        Err(UpdateRefusal::UnknownReplicate)
    );
}

#[test]
fn recovery_and_lost_workers() {
    // A lost worker coming back may resume anywhere in the default workflow.
    assert!(can_transition(Computing, WorkerLost));
    assert!(can_transition(WorkerLost, Computed));
    assert!(can_transition(WorkerLost, Completed));
    // RECOVERING may jump to whatever the chain shows, even to itself, but not restart.
    assert!(can_transition(Recovering, Revealed));
    assert!(can_transition(Recovering, Recovering));
    assert!(can_transition(Revealed, Recovering));
    assert!(!can_transition(ComputeFailed, Recovering));
    // ABORTED is not final for the core: it closes it at the end of the task.
    assert!(!Aborted.is_final());
    assert_eq!(transitions_from(Aborted), [Completed, Failed, WorkerLost]);
}

#[test]
fn what_a_worker_may_send_after_computed() {
    let next: Vec<_> = transitions_from(Computed)
        .into_iter()
        .filter(|s| s.set_by_worker())
        .collect();
    assert_eq!(next, [Contributing, ContributeAndFinalizeOngoing, Aborted]);
}
